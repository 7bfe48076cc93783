"""The plug-in tests' shared helpers: one remoting call with a fresh client (`call`, `info`,
`make_topic`, `has_topic_config`), and real librocketmq clients, each in a child process a test
can kill:
`python -m tests.integration.plugin_clients send|pull|consume ...`, the last stdout line JSON.

- send: keyed messages (optionally delayed), statuses counted;
- pull: every stored message of a topic with its queue id and queue offset;
- consume: a PushConsumer until it has seen the keys it expects; with --retry-once it answers
  RECONSUME_LATER to each first delivery, so the broker sends it back through its retry topic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from tests.integration.daemon_harness import REPO, watchdog_env
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


def run_client(args: Sequence[str], timeout_seconds: float) -> dict[str, Any]:
    """One client command in a child; its last stdout line is its JSON result."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.integration.plugin_clients", *args],
            capture_output=True,
            text=True,
            timeout=timeout_seconds,
            check=False,
            stdin=subprocess.DEVNULL,
            env=watchdog_env(),
            cwd=REPO,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"client {args[0]} hung for {timeout_seconds} s") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise AssertionError(f"client {args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def send(
    namesrv: str, topic: str, prefix: str, count: int, *, delay_level: int = 0
) -> dict[str, Any]:
    """{"acked": [keys], "statuses": {status: n}, "errors": [...], "sent_at": unix time}."""
    args = ["send", "--namesrv", namesrv, "--topic", topic, "--prefix", prefix,
            "--count", str(count), "--delay-level", str(delay_level)]  # fmt: skip
    return run_client(args, 180)


def pull(namesrv: str, topic: str, *, seconds: float = 60) -> list[dict[str, Any]]:
    """[{"key", "queue_id", "queue_offset"}] of every message stored in `topic`."""
    args = ["pull", "--namesrv", namesrv, "--topic", topic, "--seconds", str(seconds)]
    messages: list[dict[str, Any]] = run_client(args, seconds + 60)["messages"]
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
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.plugin_clients", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=watchdog_env(),
        cwd=REPO,
    )


def consumer_deliveries(
    proc: subprocess.Popen[str], timeout_seconds: float
) -> list[dict[str, Any]]:
    """[{"key", "reconsume_times", "at"}] of every delivery the consumer child saw."""
    try:
        out, err = proc.communicate(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the consumer did not finish") from None
    lines = out.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"consumer failed ({proc.returncode}): {err[-2000:]}")
    deliveries: list[dict[str, Any]] = json.loads(lines[-1])["deliveries"]
    return deliveries


# --------------------------------------------------------------------------- the children


def _send(args: argparse.Namespace) -> dict[str, Any]:
    from rocketmq.client import Message, Producer

    producer = Producer(f"PluginTestPG_{os.getpid()}")
    producer.set_namesrv_addr(args.namesrv)
    producer.start()
    acked: list[str] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []
    no_route_until = time.monotonic() + 30
    sent_at = time.time()
    try:
        for i in range(args.count):
            key = f"{args.prefix}-{i}"
            msg = Message(args.topic)
            msg.set_keys(key)
            msg.set_body(f"{key} " + "x" * 200)
            if args.delay_level:
                msg.set_delay_time_level(args.delay_level)
            while True:
                try:
                    result = producer.send_sync(msg)
                except Exception as exc:  # the ctypes client raises its own exception types
                    # "No route info": the route lookup failed, nothing was sent; try again.
                    if "No route info" in str(exc) and time.monotonic() < no_route_until:
                        time.sleep(1.0)
                        continue
                    errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                    result = None
                break
            if result is None:
                statuses["exception"] = statuses.get("exception", 0) + 1
                continue
            status = int(result.status)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status == 0:
                acked.append(key)
    finally:
        producer.shutdown()
    return {"acked": acked, "statuses": statuses, "errors": errors[:5], "sent_at": sent_at}


def _pull(args: argparse.Namespace) -> dict[str, Any]:
    from watchdog.native import pull_every_queue

    result = pull_every_queue(args.namesrv, args.topic, f"PluginTestPull_{os.getpid()}",
                              args.seconds)  # fmt: skip
    messages = [
        {"key": m.keys, "queue_id": m.queue_id, "queue_offset": m.queue_offset}
        for m in result.messages
    ]
    return {"messages": messages, "complete": result.is_complete}


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
    send_p = sub.add_parser("send")
    send_p.add_argument("--prefix", required=True)
    send_p.add_argument("--count", type=int, required=True)
    send_p.add_argument("--delay-level", type=int, default=0)
    pull_p = sub.add_parser("pull")
    pull_p.add_argument("--seconds", type=float, required=True)
    consume_p = sub.add_parser("consume")
    consume_p.add_argument("--group", required=True)
    consume_p.add_argument("--seconds", type=float, required=True)
    consume_p.add_argument("--expect", required=True)
    consume_p.add_argument("--retry-once", action="store_true")
    for p in (send_p, pull_p, consume_p):
        p.add_argument("--namesrv", required=True)
        p.add_argument("--topic", required=True)
    args = parser.parse_args(argv)
    commands = {"send": _send, "pull": _pull, "consume": _consume}
    print(json.dumps(commands[args.cmd](args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
