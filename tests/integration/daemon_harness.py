"""Failover test harness: the daemon as a child process, its state and journals, real clients.

The daemon runs as `python -m watchdog run -c FILE --log-format json`, its log in a file that
tests read back as JSON events; it is stopped by its pid. Real RocketMQ clients (librocketmq via
the `rocketmq` package) run in child processes too (`python -m tests.integration.daemon_harness
send|write-until-ok|pull-all|consume ...`): a native client that hangs is killed with its child,
never with the test process, and every client is a fresh instance as an application would be.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from watchdog.tools.daemon_child import DaemonChild, child_env, logged_at

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]


def watchdog_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every child here: the venv's bin on PATH (the sandbox's secondary
    check runs `rmq-watchdog-ping`), the repository on PYTHONPATH, no crash hook, then `extra`."""
    return child_env(extra)


def cli(
    *args: str, timeout_seconds: float = 240, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m watchdog ARGS`; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "watchdog", *args],
        capture_output=True,
        text=True,
        timeout=timeout_seconds,
        check=False,
        stdin=subprocess.DEVNULL,
        env=watchdog_env(env),
        cwd=REPO,
    )


def append_config(config: Path, text: str) -> Path:
    """Append TOML tables (e.g. "[failover]\\nrecovery_block = \\"1h\\"") to a config file."""
    with config.open("a") as fh:
        fh.write("\n" + text.strip() + "\n")
    return config


def wait_until(predicate: Callable[[], T | None], timeout_seconds: float, what: str) -> T:
    """Poll `predicate` until it returns something truthy, and return that; fail with its last
    value."""
    deadline = time.monotonic() + timeout_seconds
    last = predicate()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_seconds} s waiting for {what}: {last}")
        time.sleep(0.3)
        last = predicate()
    return last


def file_hashes(paths: Sequence[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@dataclass(frozen=True)
class Topology:
    """What the failover tests need to know of a sandbox: addresses and files by broker key."""

    dir: Path
    config: Path
    nameservers: tuple[str, ...]
    addrs: dict[str, str]  # "broker-a:0" -> "127.0.0.1:PORT"
    properties: dict[str, Path]

    @classmethod
    def of(cls, sandbox: Any) -> Topology:
        doc = sandbox.info()
        brokers = doc["brokers"]
        return cls(
            dir=Path(sandbox.dir),
            config=Path(sandbox.config_path),
            nameservers=tuple(n["addr"] for n in doc["nameservers"]),
            addrs={f"{b['broker_name']}:{b['broker_id']}": b["addr"] for b in brokers},
            properties={
                f"{b['broker_name']}:{b['broker_id']}": Path(b["properties"]) for b in brokers
            },
        )

    @property
    def namesrv(self) -> str:
        return ";".join(self.nameservers)

    @property
    def state_dir(self) -> StateDir:
        return StateDir(self.dir / "watchdog-state")

    def all_properties(self) -> list[Path]:
        return sorted(self.dir.glob("*.properties"))


# --------------------------------------------------------------------------- the daemon


class Daemon(DaemonChild):
    """One `rmq-watchdog run` child, run from the repository (watchdog/tools/daemon_child.py).

    `prefix` runs it through a program that execs it (e.g. ip netns exec); `env` is added to
    the child's environment.
    """

    def __init__(
        self,
        config: Path,
        log: Path,
        env: Mapping[str, str] | None = None,
        *,
        prefix: Sequence[str] = (),
    ) -> None:
        super().__init__(config, log, env=env, prefix=prefix, cwd=REPO)

    # The tests' name: the first event logged at or after `after` that matches.
    wait_event = DaemonChild.wait_for


# Used by tests that filter events by time.
_event_time = logged_at


def running_daemon(config: Path, log: Path, env: Mapping[str, str] | None = None) -> Daemon:
    """A Daemon for a `with` block, stopped when the block ends."""
    return Daemon(config, log, env)


# --------------------------------------------------------------------------- state and journals


@dataclass(frozen=True)
class StateDir:
    """The daemon's state dir: state.json and failovers/<id>.jsonl."""

    path: Path

    def state(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads((self.path / "state.json").read_text())
        except FileNotFoundError:
            return {"groups": {}, "running": {}}
        return doc

    def group(self, name: str) -> dict[str, Any]:
        record: dict[str, Any] = self.state()["groups"].get(name, {})
        return record

    def failover_ids(self) -> list[str]:
        folder = self.path / "failovers"
        if not folder.is_dir():
            return []
        files = sorted(folder.glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))
        return [p.stem for p in files]

    def journal(self, failover_id: str) -> list[dict[str, Any]]:
        entries = []
        for line in (self.path / "failovers" / f"{failover_id}.jsonl").read_text().splitlines():
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
        return entries

    def outcome(self, failover_id: str) -> str | None:
        finished = [e for e in self.journal(failover_id) if e.get("event") == "finished"]
        return str(finished[-1]["outcome"]) if finished else None

    def plan(self, failover_id: str) -> dict[str, Any]:
        first = self.journal(failover_id)[0]
        assert first["event"] == "planned", first
        plan: dict[str, Any] = first["plan"]
        return plan

    def step_event(
        self, failover_id: str, kind: str, event: str = "step_done", phase: str = "main"
    ) -> dict[str, Any] | None:
        for entry in self.journal(failover_id):
            is_phase = entry.get("phase", "main") == phase
            if entry.get("event") == event and entry.get("kind") == kind and is_phase:
                return entry
        return None

    def done_indexes(self, failover_id: str) -> list[int]:
        return sorted(
            int(e["index"])
            for e in self.journal(failover_id)
            if e.get("event") in ("step_done", "step_skipped") and e.get("phase") == "main"
        )

    def wait_finished(self, timeout_seconds: float, *, count: int = 1) -> str:
        """The id of the `count`-th failover once its journal says finished."""

        def finished() -> str | None:
            ids = self.failover_ids()
            if len(ids) < count:
                return None
            return ids[count - 1] if self.outcome(ids[count - 1]) else None

        return wait_until(finished, timeout_seconds, f"failover #{count} to finish")


# --------------------------------------------------------------------------- cluster queries


def _run_async(factory: Callable[[], Any]) -> Any:
    return asyncio.run(factory())


def runtime_info(addr: str, timeout_seconds: float = 3.0) -> dict[str, str] | None:
    """A broker's runtime table, or None if it does not answer."""
    from watchdog.remoting import RemotingClient, RemotingError, get_broker_runtime_info

    async def ask() -> dict[str, str] | None:
        client = RemotingClient(addr, connect_timeout_seconds=1.0)
        try:
            return dict(await get_broker_runtime_info(client, timeout_seconds=timeout_seconds))
        except RemotingError:
            return None
        finally:
            await client.close()

    result: dict[str, str] | None = _run_async(ask)
    return result


def broker_config(addr: str) -> dict[str, str] | None:
    """The broker's live config (brokerId, brokerRole as it runs), or None."""
    from watchdog.remoting import RemotingClient, RemotingError, get_broker_config

    async def ask() -> dict[str, str] | None:
        client = RemotingClient(addr, connect_timeout_seconds=1.0)
        try:
            return await get_broker_config(client, timeout_seconds=3.0)
        except RemotingError:
            return None
        finally:
            await client.close()

    result: dict[str, str] | None = _run_async(ask)
    return result


def registrations(nameservers: Sequence[str]) -> dict[str, dict[str, dict[int, str]] | None]:
    """Each nameserver's brokerName -> {brokerId: addr}, None where it does not answer."""
    from watchdog.remoting import RemotingClient, RemotingError, get_cluster_info

    async def one(addr: str) -> dict[str, dict[int, str]] | None:
        client = RemotingClient(addr, connect_timeout_seconds=1.0)
        try:
            info = await get_cluster_info(client, timeout_seconds=3.0)
            return {name: dict(ids) for name, ids in info.broker_addrs.items()}
        except RemotingError:
            return None
        finally:
            await client.close()

    async def everyone() -> list[dict[str, dict[int, str]] | None]:
        return list(await asyncio.gather(*(one(a) for a in nameservers)))

    return dict(zip(nameservers, _run_async(everyone), strict=True))


def masters_everywhere(nameservers: Sequence[str], broker_name: str) -> set[str | None]:
    """The addresses listed as id 0 of `broker_name` across the nameservers that answer."""
    return {
        (table or {}).get(broker_name, {}).get(0)
        for table in registrations(nameservers).values()
        if table is not None
    }


def consumer_offset(addr: str, group: str, topic: str, queue_id: int) -> int | None:
    """QUERY_CONSUMER_OFFSET (14) on one broker; None when it has no offset or no answer."""
    from watchdog.remoting import RemotingClient, RemotingError

    async def ask() -> int | None:
        client = RemotingClient(addr, connect_timeout_seconds=1.0)
        try:
            reply = await client.request(
                14,
                {"consumerGroup": group, "topic": topic, "queueId": str(queue_id)},
                timeout_seconds=3.0,
            )
        except RemotingError:
            return None
        finally:
            await client.close()
        if reply.code != 0:
            return None
        return int(reply.ext_fields["offset"])

    result: int | None = _run_async(ask)
    return result


def queue_max_offsets(addr: str, topic: str, queues: int) -> list[int]:
    from watchdog.remoting import RemotingClient, get_max_offset

    async def ask() -> list[int]:
        client = RemotingClient(addr, connect_timeout_seconds=1.0)
        try:
            return [
                await get_max_offset(client, topic, q, timeout_seconds=3.0) for q in range(queues)
            ]
        finally:
            await client.close()

    result: list[int] = _run_async(ask)
    return result


# --------------------------------------------------------------------------- real clients


def start_child(
    module: str, args: Sequence[str], *, is_reading_stdout: bool = True
) -> subprocess.Popen[str]:
    """`python -m module args` with the watchdog's environment; read it with child_result."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE if is_reading_stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=watchdog_env(),
        cwd=REPO,
    )


def child_result(proc: subprocess.Popen[str], timeout_seconds: float) -> dict[str, Any]:
    """A client child's JSON result, its last stdout line; it is killed when it hangs."""
    # [python, -m, module, command, ...]: the command names the child in a failure.
    name = proc.args[3] if isinstance(proc.args, list) and len(proc.args) > 3 else "child"
    try:
        out, err = proc.communicate(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"client {name} hung for {timeout_seconds} s") from None
    lines = out.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"client {name} failed ({proc.returncode}): {err[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_child(module: str, args: Sequence[str], timeout_seconds: float) -> dict[str, Any]:
    """Run one client command in a child to its end; its JSON result."""
    return child_result(start_child(module, args), timeout_seconds)


def _client(args: Sequence[str], timeout_seconds: float) -> dict[str, Any]:
    return run_child("tests.integration.daemon_harness", args, timeout_seconds)


def send_keyed(
    namesrv: str,
    topic: str,
    prefix: str,
    count: int,
    *,
    delay_level: int = 0,
    timeout_seconds: float = 120,
) -> dict[str, Any]:
    """Send `count` messages keyed prefix-0.. synchronously: {"acked": [keys], "failed": n,
    "statuses": {status: n}, "errors": [first exceptions], "no_route_retries": n, "sent_at":
    unix time}."""
    args = ["send", "--namesrv", namesrv, "--topic", topic, "--prefix", prefix,
            "--count", str(count), "--delay-level", str(delay_level)]  # fmt: skip
    return _client(args, timeout_seconds)


def write_until_ok(namesrv: str, topic: str, deadline_seconds: float) -> subprocess.Popen[str]:
    """Start a writer that retries a send until the first SEND_OK; read it with writer_result."""
    args = ["write-until-ok", "--namesrv", namesrv, "--topic", topic,
            "--seconds", str(deadline_seconds)]  # fmt: skip
    return start_child("tests.integration.daemon_harness", args)


def writer_result(proc: subprocess.Popen[str], timeout_seconds: float) -> dict[str, Any]:
    return child_result(proc, timeout_seconds)


def pull_messages(namesrv: str, topic: str, *, timeout_seconds: float = 90) -> dict[str, Any]:
    """Every message in every queue of `topic`, read from offset 0 by a PullConsumer:
    {"keys": [...], "messages": [{"key", "queue_id", "queue_offset"}], "complete": bool}."""
    args = ["pull-all", "--namesrv", namesrv, "--topic", topic, "--seconds", str(timeout_seconds)]
    return _client(args, timeout_seconds + 30)


def pull_all(namesrv: str, topic: str, *, timeout_seconds: float = 90) -> list[str]:
    """Every message key in every queue of `topic`, read from offset 0 by a PullConsumer."""
    keys: list[str] = pull_messages(namesrv, topic, timeout_seconds=timeout_seconds)["keys"]
    return keys


def start_consumer(namesrv: str, topic: str, group: str, out: Path) -> subprocess.Popen[str]:
    """A PushConsumer child appending each received key to `out`; stop it with stop_consumer."""
    args = ["consume", "--namesrv", namesrv, "--topic", topic, "--group", group, "--out", str(out)]
    return start_child("tests.integration.daemon_harness", args, is_reading_stdout=False)


def stop_consumer(proc: subprocess.Popen[str], timeout_seconds: float = 60) -> None:
    """SIGTERM: the consumer shuts down cleanly, which commits its offsets to a broker."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.stderr is not None:
        proc.stderr.close()


def consumed_keys(out: Path) -> list[str]:
    return out.read_text().split() if out.exists() else []


# --------------------------------------------------------------------------- client children


def _cmd_send(args: argparse.Namespace) -> dict[str, Any]:
    from rocketmq.client import Message, Producer

    producer = Producer(f"FailoverTestPG_{os.getpid()}")
    producer.set_namesrv_addr(args.namesrv)
    producer.start()
    acked: list[str] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []
    no_route = 0
    # librocketmq answers "No route info" when its route lookup failed (a nameserver request
    # timed out on a loaded machine): nothing was sent, so the same key is tried again.
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
                    text = str(exc)
                    if "No route info" in text and time.monotonic() < no_route_until:
                        no_route += 1
                        time.sleep(1.0)
                        continue
                    errors.append(f"{type(exc).__name__}: {text[:200]}")
                    result = None
                break
            status = "exception" if result is None else str(int(result.status))
            statuses[status] = statuses.get(status, 0) + 1
            if status == "0":
                acked.append(key)
    finally:
        producer.shutdown()
    return {
        "acked": acked,
        "failed": args.count - len(acked),
        "statuses": statuses,
        "errors": errors[:5],
        "no_route_retries": no_route,
        "sent_at": sent_at,
    }


def _cmd_write_until_ok(args: argparse.Namespace) -> dict[str, Any]:
    from rocketmq.client import Message, Producer

    producer = Producer(f"FailoverTestWriter_{os.getpid()}")
    producer.set_namesrv_addr(args.namesrv)
    producer.set_timeout(1000)
    producer.start()
    deadline = time.monotonic() + args.seconds
    attempts = 0
    last_error = ""
    try:
        while time.monotonic() < deadline:
            attempts += 1
            msg = Message(args.topic)
            msg.set_keys(f"writer-{attempts}")
            msg.set_body("first write after the kill")
            try:
                result = producer.send_sync(msg)
            except Exception as exc:
                last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                time.sleep(0.2)
                continue
            if int(result.status) == 0:
                return {"first_ok_at": time.time(), "attempts": attempts, "error": None}
            last_error = f"status {result.status}"
            time.sleep(0.2)
    finally:
        producer.shutdown()
    return {"first_ok_at": None, "attempts": attempts, "error": last_error}


def _cmd_pull_all(args: argparse.Namespace) -> dict[str, Any]:
    from watchdog.native import pull_every_queue

    result = pull_every_queue(
        args.namesrv, args.topic, f"FailoverTestPull_{os.getpid()}", args.seconds
    )
    messages = [
        {"key": m.keys, "queue_id": m.queue_id, "queue_offset": m.queue_offset}
        for m in result.messages
    ]
    return {
        "keys": [m.keys for m in result.messages],
        "messages": messages,
        "complete": result.is_complete,
    }


def _cmd_consume(args: argparse.Namespace) -> dict[str, Any]:
    from rocketmq.client import PushConsumer

    stop = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    out = open(args.out, "a")  # noqa: SIM115 - kept open for the consumer's lifetime

    def on_message(msg: Any) -> None:
        out.write(msg.keys.decode() + "\n")
        out.flush()

    consumer = PushConsumer(args.group)
    consumer.set_namesrv_addr(args.namesrv)
    consumer.set_thread_count(1)
    consumer.subscribe(args.topic, on_message)
    consumer.start()
    while not stop:
        time.sleep(0.1)
    consumer.shutdown()  # commits the consumed offsets to a broker of each queue
    out.close()
    return {"ok": True}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="daemon_harness")
    sub = parser.add_subparsers(dest="cmd", required=True)
    send = sub.add_parser("send")
    send.add_argument("--prefix", required=True)
    send.add_argument("--count", type=int, required=True)
    send.add_argument("--delay-level", type=int, default=0)
    writer = sub.add_parser("write-until-ok")
    writer.add_argument("--seconds", type=float, required=True)
    pull = sub.add_parser("pull-all")
    pull.add_argument("--seconds", type=float, required=True)
    consume = sub.add_parser("consume")
    consume.add_argument("--group", required=True)
    consume.add_argument("--out", required=True)
    for p in (send, writer, pull, consume):
        p.add_argument("--namesrv", required=True)
        p.add_argument("--topic", required=True)
    args = parser.parse_args(argv)
    commands = {
        "send": _cmd_send,
        "write-until-ok": _cmd_write_until_ok,
        "pull-all": _cmd_pull_all,
        "consume": _cmd_consume,
    }
    print(json.dumps(commands[args.cmd](args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())


@contextlib.contextmanager
def nft_drop(source: str, dest_ports: Sequence[int], *, table_prefix: str) -> Iterator[None]:
    """Drop TCP from `source` to 127.0.0.1:`dest_ports` (loopback only) while inside: a
    process that probes from `source` is cut off from those ports, everything else is not."""
    nft = shutil.which("nft")
    assert nft, "nftables missing: `make system-deps` installs it"
    table = f"{table_prefix}_{os.getpid()}"
    ports = ", ".join(str(p) for p in dest_ports)
    rules = (
        f"table inet {table} {{\n"
        "  chain out {\n    type filter hook output priority 0; policy accept;\n"
        f"    ip saddr {source} ip daddr 127.0.0.1 tcp dport {{ {ports} }} drop\n"
        "  }\n}\n"
    )
    subprocess.run([nft, "-f", "-"], input=rules, text=True, check=True)
    try:
        yield
    finally:
        subprocess.run([nft, "delete", "table", "inet", table], check=False)
