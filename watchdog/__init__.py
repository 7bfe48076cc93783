"""rmq-watchdog: automatic, explained master failover for Apache RocketMQ 4.x."""

__version__ = "0.1.0"
