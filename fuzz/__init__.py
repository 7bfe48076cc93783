"""Fuzz harnesses for everything that reads untrusted bytes (issue 9, item 6); see README.md."""
