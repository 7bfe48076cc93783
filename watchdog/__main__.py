"""`python -m watchdog` runs the rmq-watchdog command line."""

from .commands import main

main()
