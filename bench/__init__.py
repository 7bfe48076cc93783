"""Benchmarks: scripts that run against a real sandbox cluster and print a Markdown table."""
