"""A real RocketMQ producer (the PyPI `rocketmq` client, librocketmq) for integration tests."""

from __future__ import annotations

from dataclasses import dataclass

from rocketmq.client import Message, Producer


@dataclass(frozen=True)
class SendOutcome:
    sent: int
    failed: int
    errors: tuple[str, ...]


def send_messages(
    namesrv: str, topic: str, count: int, *, group: str = "WatchdogTestPG"
) -> SendOutcome:
    """Send `count` messages synchronously and count what the broker acknowledged."""
    producer = Producer(group)
    producer.set_namesrv_addr(namesrv)
    producer.start()
    sent = failed = 0
    errors: list[str] = []
    try:
        for i in range(count):
            msg = Message(topic)
            msg.set_keys(f"k{i}")
            msg.set_body(f"message {i} " + "x" * 200)
            try:
                result = producer.send_sync(msg)
            except Exception as exc:  # the ctypes client raises its own exception types
                failed += 1
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if int(result.status) == 0:
                sent += 1
            else:
                failed += 1
                errors.append(f"status {result.status}")
    finally:
        producer.shutdown()
    return SendOutcome(sent, failed, tuple(errors[:5]))
