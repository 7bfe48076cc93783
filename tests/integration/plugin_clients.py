"""The plug-in tests' shared helpers: one remoting call with a fresh client (`call`, `info`,
`make_topic`, `has_topic_config`), and real librocketmq clients, each in a child process a test
can kill. `send` (keyed messages, optionally delayed, statuses counted) and `pull` (every stored
message of a topic with its queue id and queue offset) are daemon_harness's children; this
module's own is `python -m tests.integration.plugin_clients consume ...` (the last stdout line
JSON): a PushConsumer until it has seen the keys it expects; with --retry-once it answers
RECONSUME_LATER to each first delivery, so the broker sends it back through its retry topic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from tests.integration.daemon_harness import (
    child_result,
    pull_messages,
    send_keyed,
    start_child,
)
from watchdog.remoting import (
    PluginInfo,
    RemotingClient,
    RequestCode,
    create_topic,
    get_plugin_info,
)

T = TypeVar("T")


def call(addr: str, use: Callable[[RemotingClient], Awaitable[T]]) -> T:
    """Run one async call with a fresh client to `addr`."""

    async def go() -> T:
        client = RemotingClient(addr, connect_timeout_seconds=2.0)
        try:
            return await use(client)
        finally:
            await client.close()

    return asyncio.run(go())


def info(addr: str) -> PluginInfo:
    found = call(addr, lambda c: get_plugin_info(c, timeout_seconds=5.0))
    assert found is not None, f"{addr} has no plug-in"
    return found


def make_topic(addr: str, topic: str, queues: int) -> None:
    call(
        addr,
        lambda c: create_topic(
            c, topic, read_queue_nums=queues, write_queue_nums=queues, timeout_seconds=10.0
        ),
    )


def has_topic_config(addr: str, topic: str) -> bool:
    """The broker's topic table (GET_ALL_TOPIC_CONFIG) names `topic`: a slave gets it from its
    master's SlaveSynchronize, every 10 s."""
    reply = call(addr, lambda c: c.request(RequestCode.GET_ALL_TOPIC_CONFIG, timeout_seconds=5.0))
    return reply.code == 0 and f'"{topic}"'.encode() in reply.body


def send(
    namesrv: str, topic: str, prefix: str, count: int, *, delay_level: int = 0
) -> dict[str, Any]:
    """{"acked": [keys], "statuses": {status: n}, "errors": [...], "sent_at": unix time}."""
    return send_keyed(namesrv, topic, prefix, count, delay_level=delay_level, timeout_seconds=180)


def pull(namesrv: str, topic: str, *, seconds: float = 60) -> list[dict[str, Any]]:
    """[{"key", "queue_id", "queue_offset"}] of every message stored in `topic`."""
    messages: list[dict[str, Any]] = pull_messages(namesrv, topic, timeout_seconds=seconds)[
        "messages"
    ]
    return messages


def start_consumer(
    namesrv: str, topic: str, group: str, expect: Sequence[str], *, seconds: float,
    retry_once: bool = False,
) -> subprocess.Popen[str]:  # fmt: skip
    """A PushConsumer child that runs until each key of `expect` was consumed (delivered and
    not sent back) or `seconds` passed; read its deliveries with consumer_deliveries."""
    args = ["consume", "--namesrv", namesrv, "--topic", topic, "--group", group,
            "--seconds", str(seconds), "--expect", ",".join(expect)]  # fmt: skip
    if retry_once:
        args.append("--retry-once")
    return start_child("tests.integration.plugin_clients", args)


def consumer_deliveries(
    proc: subprocess.Popen[str], timeout_seconds: float
) -> list[dict[str, Any]]:
    """[{"key", "reconsume_times", "at"}] of every delivery the consumer child saw."""
    deliveries: list[dict[str, Any]] = child_result(proc, timeout_seconds)["deliveries"]
    return deliveries


# --------------------------------------------------------------------------- the children


def _consume(args: argparse.Namespace) -> dict[str, Any]:
    # The wheel's subscribe() cannot answer RECONSUME_LATER (an exception in its callback is
    # re-raised inside the ctypes callback, which then returns 0 = CONSUME_SUCCESS), so the
    # callback is registered on the C API directly.
    from rocketmq.client import PushConsumer, RecvMessage
    from rocketmq.exceptions import ffi_check
    from rocketmq.ffi import MSG_CALLBACK_FUNC, dll

    expect = set(filter(None, args.expect.split(",")))
    consumed: set[str] = set()
    deliveries: list[dict[str, Any]] = []
    lock = threading.Lock()
    done = threading.Event()

    def on_message(_consumer: Any, handle: Any) -> int:
        msg = RecvMessage(handle)
        key = (msg.keys or b"").decode("utf-8", "replace")
        times = int(msg.reconsume_times)
        with lock:
            deliveries.append({"key": key, "reconsume_times": times, "at": time.time()})
            if args.retry_once and times == 0:
                return 1  # RECONSUME_LATER
            consumed.add(key)
            if expect <= consumed:
                done.set()
        return 0  # CONSUME_SUCCESS

    consumer = PushConsumer(args.group)
    consumer.set_namesrv_addr(args.namesrv)
    consumer.set_thread_count(1)
    ffi_check(dll.Subscribe(consumer._handle, args.topic.encode(), b"*"))
    callback = MSG_CALLBACK_FUNC(on_message)  # kept referenced until the consumer is shut down
    ffi_check(dll.RegisterMessageCallback(consumer._handle, callback))
    consumer.start()
    try:
        done.wait(args.seconds)
    finally:
        consumer.shutdown()
    with lock:
        return {"deliveries": list(deliveries)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plugin_clients")
    sub = parser.add_subparsers(dest="cmd", required=True)
    consume_p = sub.add_parser("consume")
    consume_p.add_argument("--group", required=True)
    consume_p.add_argument("--seconds", type=float, required=True)
    consume_p.add_argument("--expect", required=True)
    consume_p.add_argument("--retry-once", action="store_true")
    consume_p.add_argument("--namesrv", required=True)
    consume_p.add_argument("--topic", required=True)
    args = parser.parse_args(argv)
    print(json.dumps(_consume(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
