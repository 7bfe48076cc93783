"""`python -m watchdog` runs the rmq-watchdog command line."""

from .cli import main

main()
