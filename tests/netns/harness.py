"""A `sandbox up --netns` cluster for tests: hosts, faults, processes, the daemon, a nemesis."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon_harness import (
    REPO,
    Daemon,
    Topology,
    masters_everywhere,
    registrations,
    watchdog_env,
)
from watchdog.tools.sandbox import Sandbox
from watchdog.tools.sandbox._netns import OBSERVER, NetnsTopology

__all__ = [
    "NEMESIS_SEED_ENV",
    "OBSERVER",
    "Nemesis",
    "NemesisAction",
    "NetnsCluster",
    "NetnsDaemon",
    "leftovers",
    "netns_cluster_in",
]

log = logging.getLogger("tests.netns")

UP_TIMEOUT_SECONDS = 240
DOWN_TIMEOUT_SECONDS = 120
NEMESIS_SEED_ENV = "RMQWD_NEMESIS_SEED"


def sandbox_cli(*args: str, timeout_seconds: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog", "sandbox", *args],
        capture_output=True,
        text=True,
        timeout=timeout_seconds,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def leftovers(prefix: str) -> list[str]:
    """What of a topology named `prefix` is still on this machine: namespaces, links,
    processes in those namespaces."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    found += [f"netns {line.split()[0]}" for line in netns.stdout.splitlines()
              if line.startswith(f"{prefix}-")]  # fmt: skip
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False)
    for line in links.stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(f"{prefix}-"):
            found.append(f"link {name}")
    return found


class NetnsDaemon(Daemon):
    """`rmq-watchdog run` inside a host's namespace (ip netns exec execs it: same pid)."""

    def __init__(
        self,
        prefix: Sequence[str],
        config: Path,
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(config, log_path, env, prefix=prefix)


@dataclass
class NetnsCluster:
    """One `sandbox up --netns` cluster, as fixtures yield it.

    Hosts: server1, server2 (nameservers :9876), server3 (broker-a:0), server4 (broker-a:1),
    watchdog, vantage, clients; "observer" is the test process (root namespace, 198.18.N.1).
    Process keys are the sandbox's: "broker-a:0", "broker-a:1", and nameservers by address or
    index ("0", "1").
    """

    sandbox: Sandbox
    net: NetnsTopology
    tmp: Path
    daemons: list[NetnsDaemon] = field(default_factory=list)

    @property
    def dir(self) -> Path:
        return self.sandbox.dir

    @property
    def config(self) -> Path:
        return self.sandbox.config_path

    @property
    def topology(self) -> Topology:
        """Addresses and properties by broker key (tests.integration.daemon_harness)."""
        return Topology.of(self.sandbox)

    @property
    def nameservers(self) -> tuple[str, ...]:
        return tuple(self.sandbox.nameserver_addrs())

    @property
    def namesrv(self) -> str:
        return ";".join(self.nameservers)

    # ---- hosts

    def address(self, host: str) -> str:
        return self.net.address(host)

    def host_of(self, key: str) -> str:
        """broker-a:0 -> server3; a nameserver (address or index) -> server1/server2."""
        if ":" not in key or key.split(":")[0][0].isdigit():
            key = self.sandbox.resolve_nameserver(key)
        return self.sandbox.host_of(key)

    def addr(self, key: str) -> str:
        """A broker's or nameserver's address."""
        for row in self.sandbox.status():
            if key in (row.key, row.name):
                return row.addr
        return self.sandbox.resolve_nameserver(key)

    def exec_prefix(self, host: str) -> list[str]:
        """The argv prefix of `host`: ["ip", "netns", "exec", NS] ([] for "observer")."""
        return self.exec_argv(host, [])

    def exec_argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """argv inside `host`: ["ip", "netns", "exec", NS, *argv]; "observer" = as is."""
        return list(argv) if host == OBSERVER else self.net.exec_argv(host, argv)

    def run(
        self, host: str, argv: Sequence[str], *, timeout_seconds: float = 60.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run argv in `host` (env: the venv on PATH, the repo on PYTHONPATH; cwd: the repo)."""
        done = subprocess.run(
            self.exec_argv(host, argv),
            capture_output=True,
            text=True,
            timeout=timeout_seconds,
            check=False,
            stdin=subprocess.DEVNULL,
            env=watchdog_env(),
            cwd=REPO,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{argv} in {host} exited {done.returncode}: {done.stderr}")
        return done

    def popen(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start argv in `host` without waiting (the caller stops it)."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(
            self.exec_argv(host, argv), text=True, env=watchdog_env(), cwd=REPO, **kwargs
        )

    def python(
        self, host: str, *args: str, timeout_seconds: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """This interpreter with `args` in `host`: python("clients", "-m", "watchdog.ping", a)."""
        return self.run(host, [sys.executable, *args], timeout_seconds=timeout_seconds)

    def ping(self, host: str, addr: str, timeout: str = "1s") -> int:
        """Exit code of `python -m watchdog.ping ADDR` run in `host`: 0 answered, 1 not."""
        return self.python(host, "-m", "watchdog.ping", addr, "--timeout", timeout).returncode

    def ssh_argv(self, src: str, dst: str, command: str) -> list[str]:
        """ssh from host `src` to `dst` as root with the sandbox's key and known_hosts."""
        ssh = self.sandbox.info()["netns"]["ssh"]
        return self.exec_argv(src, [
            "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            "-o", f"UserKnownHostsFile={ssh['known_hosts']}", "-o", "StrictHostKeyChecking=yes",
            "-i", ssh["client_key"], "-p", str(ssh["port"]),
            f"{ssh['user']}@{self.address(dst)}", command,
        ])  # fmt: skip

    def ssh(
        self, src: str, dst: str, command: str, *, timeout_seconds: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.ssh_argv(src, dst, command),
            capture_output=True,
            text=True,
            timeout=timeout_seconds,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    # ---- faults (the topology's; see NetnsTopology)

    def partition(self, *groups: Sequence[str], replace: bool = False) -> None:
        """Hosts in different groups cannot talk; hosts in no group reach everyone."""
        self.net.partition(*groups, replace=replace)

    def cut(self, src: str, dst: str, *, replace: bool = False) -> None:
        """Packets from src to dst are dropped (one way)."""
        self.net.cut(src, dst, replace=replace)

    def isolate(self, host: str, *, observer: bool = False, replace: bool = False) -> None:
        """`host` cut from every other host (and from the observer with observer=True)."""
        self.net.isolate(host, observer=observer, replace=replace)

    def heal(self) -> None:
        self.net.heal()

    # ---- processes

    def kill(self, key: str, signal: str = "KILL") -> None:
        """kill -SIGNAL (KILL, TERM, STOP, CONT) one broker or nameserver by pid."""
        self.sandbox.kill(self._key(key), signal)

    def stop(self, key: str) -> None:
        """SIGSTOP: the JVM freezes; its sockets stay open (see cont)."""
        self.kill(key, "STOP")

    def cont(self, key: str) -> None:
        self.kill(key, "CONT")

    def shutdown(self, key: str, timeout_seconds: float = 30.0) -> None:
        """Graceful stop (TERM, wait, KILL), as `sandbox stop`."""
        self.sandbox.stop(self._key(key), timeout_seconds=timeout_seconds)

    def start(self, key: str, *, wait_registered: bool = False) -> None:
        """Start a stopped broker or nameserver in its own namespace."""
        self.sandbox.start(self._key(key), wait_registered=wait_registered)

    def state(self, key: str) -> str:
        key = self._key(key)
        return next(r.state for r in self.sandbox.status() if r.key == key)

    def _key(self, key: str) -> str:
        if ":" not in key or key.split(":")[0][0].isdigit():
            return self.sandbox.resolve_nameserver(key)
        return self.sandbox.resolve_broker(key)

    # ---- what the observer sees

    def masters(self, broker_name: str = "broker-a") -> set[str | None]:
        return masters_everywhere(self.nameservers, broker_name)

    def registrations(self) -> dict[str, dict[str, dict[int, str]] | None]:
        return registrations(self.nameservers)

    # ---- the daemon

    def daemon_config(self, extra: str = "", *, top_level: str = "", name: str = "daemon") -> Path:
        """A copy of DIR/watchdog.toml with `top_level` keys (e.g. "dry_run = true") first and
        `extra` TOML tables (e.g. "[detect]\\ndown_after = \\"3s\\"") appended."""
        path = self.tmp / f"{name}.toml"
        text = self.config.read_text()
        path.write_text((top_level.strip() + "\n" if top_level else "") + text
                        + ("\n" + extra.strip() + "\n" if extra else ""))  # fmt: skip
        return path

    @contextlib.contextmanager
    def running_daemon(
        self,
        extra: str = "",
        *,
        top_level: str = "",
        name: str = "daemon",
        host: str = "watchdog",
        env: Mapping[str, str] | None = None,
    ) -> Iterator[NetnsDaemon]:
        """The daemon in `host` (the watchdog namespace) on DIR/watchdog.toml plus `extra`;
        stopped (TERM, then KILL) when the block ends. Its JSON log: tmp/<name>.log."""
        config = self.daemon_config(extra, top_level=top_level, name=name)
        daemon = NetnsDaemon(self.exec_argv(host, []), config, self.tmp / f"{name}.log", env)
        self.daemons.append(daemon)
        with daemon:
            yield daemon

    # ---- real clients in the clients host

    def client(self, args: Sequence[str], timeout_seconds: float = 120.0) -> dict[str, Any]:
        """A tests.integration.daemon_harness client command (send, write-until-ok, pull-all)
        run in the clients host; its JSON result."""
        done = self.run(
            "clients",
            [sys.executable, "-m", "tests.integration.daemon_harness", *args],
            timeout_seconds=timeout_seconds,
        )
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise AssertionError(
                f"client {args[0]} failed ({done.returncode}): {done.stderr[-2000:]}"
            )
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def send_keyed(self, topic: str, prefix: str, count: int) -> dict[str, Any]:
        return self.client(["send", "--namesrv", self.namesrv, "--topic", topic,
                            "--prefix", prefix, "--count", str(count)])  # fmt: skip


@contextlib.contextmanager
def netns_cluster_in(directory: Path, tmp: Path, *options: str) -> Iterator[NetnsCluster]:
    """`sandbox up --netns --dir directory` (TLS disabled), yielded as a NetnsCluster; on exit
    the daemons stop, the faults heal, `sandbox down` runs, and nothing of ours may be left."""
    result = sandbox_cli("up", "--netns", "--dir", str(directory), "--tls", "disabled", *options,
                         timeout_seconds=UP_TIMEOUT_SECONDS)  # fmt: skip
    if result.returncode != 0:
        cleanup = ""
        try:
            _down(directory)  # `up` removes what it made; this is for an `up` killed midway
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            cleanup = f"\n(and the cleanup failed: {exc})"
        pytest.fail(
            f"sandbox up --netns failed (exit {result.returncode}):\n{result.stderr}{cleanup}"
        )
    box = Sandbox(directory)
    net = box.netns()
    assert net is not None
    cluster = NetnsCluster(box, net, tmp)
    try:
        yield cluster
    finally:
        for daemon in cluster.daemons:
            daemon.stop(timeout_seconds=30)
        with contextlib.suppress(Exception):
            net.heal()
        _down(directory)
        left = leftovers(net.prefix)
        if left:
            raise RuntimeError(f"sandbox down left {', '.join(left)}")


def _down(directory: Path) -> None:
    if (directory / "cluster.json").exists():
        # Thrown away: KILL at once (see tests/integration/conftest.py's stop_sandbox).
        result = sandbox_cli("down", "--dir", str(directory), "--timeout", "0s",
                             timeout_seconds=DOWN_TIMEOUT_SECONDS)  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"sandbox down failed in {directory}: {result.stderr}")


# --------------------------------------------------------------------------- the nemesis


FAULTS: tuple[str, ...] = ("partition", "cut", "isolate", "kill", "pause", "heal", "restart")


@dataclass(frozen=True)
class NemesisAction:
    """One thing the nemesis did (or skipped), `at` seconds after it started."""

    at: float
    wall: float
    kind: str
    detail: str

    def line(self) -> str:
        return json.dumps({"at": round(self.at, 3), "wall": self.wall, "kind": self.kind,
                           "detail": self.detail})  # fmt: skip


@dataclass(frozen=True)
class _Step:
    offset: float
    kind: str
    choice: float  # a random number in [0, 1) that picks the targets


class Nemesis:
    """A random fault schedule that a seed fixes: partitions (a random split of the hosts into
    two groups), one-way cuts, isolated hosts, kill -9 and SIGSTOP of a broker (or nameserver
    with `nameservers=True`), heals (network, and SIGCONT of what is paused), restarts of what
    was killed; one every `gap` seconds (uniform) for `duration_seconds`, then everything is
    healed and restarted. A network fault replaces the one before it (one at a time, switched
    in one step); process faults stay until a heal or restart step. The seed: `seed`, else
    $RMQWD_NEMESIS_SEED, else a random one; it is logged first so a failing run can be
    replayed. Each action is logged (logger tests.netns,
    and `log_path` as JSON lines) with its time.
    """

    def __init__(
        self,
        cluster: NetnsCluster,
        duration_seconds: float,
        *,
        seed: int | None = None,
        gap: tuple[float, float] = (2.0, 6.0),
        faults: Sequence[str] = FAULTS,
        hosts: Sequence[str] | None = None,
        nameservers: bool = False,
        log_path: Path | None = None,
    ) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS}")
        if seed is None:
            env = os.environ.get(NEMESIS_SEED_ENV, "").strip()
            seed = int(env) if env else random.SystemRandom().randrange(2**32)
        self.cluster = cluster
        self.seed = seed
        self.duration_seconds = duration_seconds
        self.hosts = tuple(hosts or cluster.net.names)
        self.nameservers = nameservers
        self.log_path = log_path
        self.actions: list[NemesisAction] = []
        self.steps = self.schedule(seed, duration_seconds, gap, tuple(faults))
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._error: BaseException | None = None

    @staticmethod
    def schedule(
        seed: int, duration_seconds: float, gap: tuple[float, float], faults: Sequence[str]
    ) -> list[_Step]:
        """The (offset, fault, target pick) list of a seed: the same seed, the same list."""
        rng = random.Random(seed)
        steps: list[_Step] = []
        offset = rng.uniform(*gap)
        while offset < duration_seconds:
            steps.append(_Step(offset, rng.choice(list(faults)), rng.random()))
            offset += rng.uniform(*gap)
        return steps

    # ---- running

    def run(self) -> list[NemesisAction]:
        """Play the whole schedule in this thread, then recover; the actions taken."""
        self._started = time.monotonic()
        self._note("seed", f"{NEMESIS_SEED_ENV}={self.seed} ({len(self.steps)} steps over "
                   f"{self.duration_seconds:.0f} s)")  # fmt: skip
        try:
            for step in self.steps:
                wait = self._started + step.offset - time.monotonic()
                if self._stop.wait(max(0.0, wait)):
                    break
                self._act(step)
        finally:
            self.recover()
        return list(self.actions)

    @contextlib.contextmanager
    def running(self) -> Iterator[Nemesis]:
        """Play the schedule in a background thread while the block runs; on exit stop early if
        need be, recover, and re-raise an error the nemesis hit."""

        def target() -> None:
            try:
                self.run()
            except BaseException as exc:  # handed to the test thread
                self._error = exc

        self._thread = threading.Thread(target=target, name="nemesis", daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=300)
            if self._error is not None:
                raise self._error

    def wait(self, timeout_seconds: float | None = None) -> None:
        """Wait until the background schedule (`running`) has finished and recovered."""
        if self._thread is not None:
            self._thread.join(timeout_seconds)

    def recover(self) -> None:
        """Heal the network, SIGCONT what is paused, start what is stopped."""
        self.cluster.heal()
        for row in self.cluster.sandbox.status():
            if row.state == "paused":
                self.cluster.kill(row.key, "CONT")
                self._note("recover", f"SIGCONT {row.key}")
        for row in self.cluster.sandbox.status():
            if row.state in ("stopped", "zombie"):
                self._try(partial(self.cluster.start, row.key), "recover", f"start {row.key}")
        self._note("recover", "network healed")

    # ---- one step

    def _targets(self) -> list[str]:
        rows = self.cluster.sandbox.status()
        return [r.key for r in rows if r.kind == "broker" or self.nameservers]

    def _act(self, step: _Step) -> None:
        pick = random.Random(f"{self.seed}:{step.offset}:{step.choice}")
        hosts = list(self.hosts)
        if step.kind == "partition":
            shuffled = pick.sample(hosts, len(hosts))
            cut_at = pick.randrange(1, len(hosts))
            a, b = sorted(shuffled[:cut_at]), sorted(shuffled[cut_at:])
            self.cluster.partition(a, b, replace=True)
            self._note("partition", f"{a} | {b}")
        elif step.kind == "cut":
            src, dst = pick.sample(hosts, 2)
            self.cluster.cut(src, dst, replace=True)
            self._note("cut", f"{src} -> {dst}")
        elif step.kind == "isolate":
            host = pick.choice(hosts)
            self.cluster.isolate(host, replace=True)
            self._note("isolate", host)
        elif step.kind in ("kill", "pause"):
            alive = [k for k in self._targets() if self.cluster.state(k) == "alive"]
            if not alive:
                self._note("skipped", f"{step.kind}: nothing alive")
                return
            key = pick.choice(sorted(alive))
            signal = "KILL" if step.kind == "kill" else "STOP"
            self._try(lambda: self.cluster.kill(key, signal), step.kind, f"SIG{signal} {key}")
        elif step.kind == "heal":
            self.cluster.heal()
            paused = [k for k in self._targets() if self.cluster.state(k) == "paused"]
            for key in paused:
                self._try(partial(self.cluster.cont, key), "heal", f"SIGCONT {key}")
            self._note("heal", "network healed")
        elif step.kind == "restart":
            stopped = [k for k in self._targets() if self.cluster.state(k) in ("stopped", "zombie")]
            if not stopped:
                self._note("skipped", "restart: nothing stopped")
                return
            key = pick.choice(sorted(stopped))
            self._try(lambda: self.cluster.start(key), "restart", f"start {key}")

    def _try(self, action: Callable[[], None], kind: str, detail: str) -> None:
        # The daemon acts on the same processes (a failover restarts brokers): a refusal such
        # as "already runs" is logged, not raised.
        try:
            action()
        except Exception as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            self._note("skipped", f"{detail}: {first[:300]}")
            return
        self._note(kind, detail)

    def _note(self, kind: str, detail: str) -> None:
        action = NemesisAction(time.monotonic() - self._started, time.time(), kind, detail)
        self.actions.append(action)
        log.warning("nemesis %+.1fs %s %s", action.at, kind, detail)
        if self.log_path is not None:
            with self.log_path.open("a") as fh:
                fh.write(action.line() + "\n")
