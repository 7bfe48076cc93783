"""Separate test hosts on one machine: Linux network namespaces on a bridge, nftables partitions."""

from __future__ import annotations

import fcntl
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from ._files import CLUSTER_NAME, broker_table, toml_list, toml_str
from ._runtime import SandboxError
from ._topology import BrokerPlan, Topology

__all__ = [
    "HOST_LAYOUT",
    "NETNS_BROKER_PORT",
    "NETNS_METRICS_PORT",
    "NETNS_NAMESRV_PORT",
    "OBSERVER",
    "PROCESS_HOSTS",
    "SSH_HOSTS",
    "NetnsHost",
    "NetnsTopology",
    "SshAccess",
    "check_netns_support",
    "netns_topology",
    "netns_watchdog_toml_text",
    "pick_subnet",
    "plan_netns_cluster",
    "run_watchdog_script",
]

# The hosts of the seed's layout: name, short name (in interface names), last address octet.
HOST_LAYOUT: tuple[tuple[str, str, int], ...] = (
    ("server1", "s1", 11),
    ("server2", "s2", 12),
    ("server3", "s3", 13),
    ("server4", "s4", 14),
    ("watchdog", "wd", 21),
    ("vantage", "vp", 22),
    ("clients", "cl", 23),
)
# Which process of the cluster runs on which host (sandbox process names).
PROCESS_HOSTS: Mapping[str, str] = {
    "namesrv-0": "server1",
    "namesrv-1": "server2",
    "broker-a-0": "server3",
    "broker-a-1": "server4",
}
SSH_HOSTS: tuple[str, ...] = ("server1", "server2", "server3", "server4", "vantage")
# The name `cut`, `partition` and `isolate` accept for the root namespace (the test process).
OBSERVER = "observer"
NETNS_NAMESRV_PORT = 9876
NETNS_BROKER_PORT = 10911
NETNS_METRICS_PORT = 9108

# RFC 2544's benchmark range 198.18.0.0/15: 198.18.N.0/24, N the first one unused here.
_NET_BASE = "198.18"
_PREFIX_LEN = 24
_TABLE = "rqwd"
_LOCK = Path("/run/lock/rmq-watchdog-netns.lock")
_CMD_TIMEOUT_SECONDS = 30.0


def _which(tool: str) -> str:
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        raise SandboxError(
            f"{tool} is not installed; the network-namespace sandbox needs ip (iproute2) and "
            "nft (nftables)"
        )
    return found


def check_netns_support() -> None:
    """Raise SandboxError unless this process can create namespaces, bridges and nft tables."""
    if os.geteuid() != 0:
        raise SandboxError(
            "the network-namespace sandbox needs root (ip netns add, bridges, nftables); "
            "run it as root"
        )
    _which("ip")
    _which("nft")
    if not Path("/proc/self/ns/net").exists():
        raise SandboxError("this kernel has no network namespaces (/proc/self/ns/net is missing)")


def _run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_CMD_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SandboxError(f"`{' '.join(argv)}` did not finish within 30 s") from None
    except OSError as exc:
        raise SandboxError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    if check and done.returncode != 0:
        why = (done.stderr or done.stdout).strip().replace("\n", "; ")
        raise SandboxError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {why}")
    return done.stdout


@dataclass(frozen=True)
class NetnsHost:
    """One host: a network namespace with eth0 on the bridge (root-side veth `veth`)."""

    name: str
    short: str
    address: str
    netns: str
    veth: str


def _used_subnets() -> set[int]:
    """The N of every 198.18.N.x address configured in the root namespace."""
    used: set[int] = set()
    for line in _run([_which("ip"), "-o", "-4", "addr", "show"]).splitlines():
        for word in line.split():
            if word.startswith(f"{_NET_BASE}."):
                parts = word.split("/")[0].split(".")
                if len(parts) == 4 and parts[2].isdigit():
                    used.add(int(parts[2]))
    return used


def _existing_netns() -> set[str]:
    try:
        return {p.name for p in Path("/run/netns").iterdir()}
    except OSError:
        return set()


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


class NetnsTopology:
    """The seed's hosts as network namespaces on one bridge, and the faults between them.

    The bridge holds 198.18.N.1, the observer: the root namespace (the test process) sees
    every host and is never partitioned unless asked (`isolate(h, observer=True)`, `cut` with
    "observer"). Faults are directed pairs (src, dst) whose packets are dropped; they add up
    until `heal()`. Each is an nftables rule in the receiving namespace's own table ("input":
    packets from src vanish, so the sender sees timeouts as on a real network), except packets
    to the observer, dropped in the sender's "output" chain (the root namespace has no rules of
    ours).
    """

    def __init__(self, prefix: str, subnet: int, hosts: Sequence[NetnsHost]) -> None:
        self.prefix = prefix
        self.subnet = subnet
        self.hosts: tuple[NetnsHost, ...] = tuple(hosts)
        self._by_name = {h.name: h for h in self.hosts}
        self._blocked: frozenset[tuple[str, str]] = frozenset()
        self._rendered: dict[str, str] = {}

    # ---- naming

    @classmethod
    def plan(cls, prefix: str | None = None, subnet: int = 0) -> NetnsTopology:
        """The hosts' names and addresses; nothing is created (see `create`)."""
        prefix = prefix or f"rq{secrets.token_hex(2)}"
        if not (prefix.isascii() and prefix.replace("-", "").isalnum() and len(prefix) <= 8):
            raise SandboxError(f"netns prefix {prefix!r} must be at most 8 letters or digits")
        if not 0 <= subnet <= 255:
            raise SandboxError(f"subnet {subnet} is not 0-255 (198.18.N.0/24)")
        hosts = [
            NetnsHost(name, short, f"{_NET_BASE}.{subnet}.{octet}", f"{prefix}-{short}",
                      f"{prefix}-{short}")
            for name, short, octet in HOST_LAYOUT
        ]  # fmt: skip
        return cls(prefix, subnet, hosts)

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br"

    @property
    def observer_address(self) -> str:
        return f"{_NET_BASE}.{self.subnet}.1"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hosts)

    def host(self, name: str) -> NetnsHost:
        try:
            return self._by_name[name]
        except KeyError:
            raise SandboxError(
                f"no host {name!r} in this topology; hosts: {', '.join(self.names)}"
            ) from None

    def address(self, name: str) -> str:
        return self.observer_address if name == OBSERVER else self.host(name).address

    def exec_argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """argv run inside `host`'s namespace: ["ip", "netns", "exec", NS, *argv]."""
        return [_which("ip"), "netns", "exec", self.host(host).netns, *argv]

    def run(
        self,
        host: str,
        argv: Sequence[str],
        *,
        timeout_seconds: float = 60.0,
        check: bool = False,
        env: Mapping[str, str] | None = None,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv in `host` and wait; text output captured. check=True raises SandboxError."""
        full = self.exec_argv(host, argv)
        done = subprocess.run(
            full,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_seconds,
            check=False,
            env=None if env is None else dict(env),
        )
        if check and done.returncode != 0:
            raise SandboxError(
                f"`{' '.join(argv)}` in {host} exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-500:]}"
            )
        return done

    def to_doc(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "subnet": f"{_NET_BASE}.{self.subnet}.0/{_PREFIX_LEN}",
            "bridge": self.bridge,
            "observer": self.observer_address,
            "hosts": {
                h.name: {"netns": h.netns, "address": h.address, "veth": h.veth} for h in self.hosts
            },
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> NetnsTopology:
        try:
            subnet = int(str(doc["subnet"]).split(".")[2])
            hosts = [
                NetnsHost(name, str(h["netns"]).rpartition("-")[2], str(h["address"]),
                          str(h["netns"]), str(h["veth"]))
                for name, h in doc["hosts"].items()
            ]  # fmt: skip
            return cls(str(doc["prefix"]), subnet, hosts)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise SandboxError(
                f"the netns record in cluster.json is unreadable ({exc!r})"
            ) from None

    # ---- life cycle

    def exists(self) -> bool:
        """Whether any namespace or link of ours is still there."""
        if any(h.netns in _existing_netns() for h in self.hosts):
            return True
        return _link_exists(self.bridge) or any(_link_exists(h.veth) for h in self.hosts)

    def create(self) -> None:
        """Create the bridge and every host; on failure remove what was made and raise."""
        check_netns_support()
        ip = _which("ip")
        _LOCK.parent.mkdir(parents=True, exist_ok=True)
        with _LOCK.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if self.subnet in _used_subnets():
                    raise SandboxError(
                        f"{_NET_BASE}.{self.subnet}.0/{_PREFIX_LEN} is already in use on this "
                        "machine (another network-namespace sandbox?)"
                    )
                taken = [h.netns for h in self.hosts if h.netns in _existing_netns()]
                if taken or _link_exists(self.bridge):
                    raise SandboxError(
                        f"namespaces or links named {self.prefix}-* already exist; "
                        "choose another prefix"
                    )
                try:
                    self._create(ip)
                except BaseException:
                    self.destroy()
                    raise
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _create(self, ip: str) -> None:
        br = self.bridge
        _run([ip, "link", "add", br, "type", "bridge"])
        _disable_ipv6_root(br)
        _run([ip, "addr", "add", f"{self.observer_address}/{_PREFIX_LEN}", "dev", br])
        _run([ip, "link", "set", br, "up"])
        for h in self.hosts:
            _run([ip, "netns", "add", h.netns])
            # No IPv6 at all: no router solicitations or MLD reports on the bridge.
            _run(
                [ip, "netns", "exec", h.netns, "sh", "-c",
                 "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; "
                 "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"],
                check=False,
            )  # fmt: skip
            _run([ip, "link", "add", h.veth, "type", "veth", "peer", "name", "eth0",
                  "netns", h.netns])  # fmt: skip
            _disable_ipv6_root(h.veth)
            _run([ip, "link", "set", h.veth, "master", br, "up"])
            _run([ip, "-n", h.netns, "link", "set", "lo", "up"])
            _run([ip, "-n", h.netns, "addr", "add", f"{h.address}/{_PREFIX_LEN}", "dev", "eth0"])
            _run([ip, "-n", h.netns, "link", "set", "eth0", "up"])
            _run(
                [ip, "netns", "exec", h.netns, _which("nft"), "-f", "-"],
                stdin=(
                    f"add table inet {_TABLE}\n"
                    f"add chain inet {_TABLE} input "
                    "{ type filter hook input priority -10 ; policy accept ; }\n"
                    f"add chain inet {_TABLE} output "
                    "{ type filter hook output priority -10 ; policy accept ; }\n"
                ),
            )
        self._blocked = frozenset()
        self._rendered = {}
        self._check_reachable()

    def _check_reachable(self) -> None:
        """Every host answers the observer, and the watchdog host answers the others: a TCP
        connect to port 9 (nothing listens) must be refused at once, not time out."""
        first = self.hosts[0]
        probes = [("observer", h.address) for h in self.hosts]
        probes += [(first.name, h.address) for h in self.hosts[1:]]
        for source, address in probes:
            try:
                if source == "observer":
                    with socket.create_connection((address, 9), timeout=3.0):
                        pass
                else:
                    code = (
                        "import socket,sys\n"
                        "try:\n"
                        f"    socket.create_connection(({address!r}, 9), timeout=3.0)\n"
                        "except ConnectionRefusedError:\n"
                        "    sys.exit(0)\n"
                        "except OSError as exc:\n"
                        "    sys.exit(str(exc))\n"
                    )
                    _run(self.exec_argv(source, [sys.executable, "-c", code]))
                    continue
            except ConnectionRefusedError:
                continue
            except (OSError, SandboxError) as exc:
                raise SandboxError(
                    f"{address} does not answer from {source} across bridge {self.bridge} "
                    f"({exc}); does a firewall in the root namespace drop bridged traffic "
                    "(net.bridge.bridge-nf-call-iptables with a FORWARD policy of DROP)?"
                ) from None

    def pids(self) -> dict[str, list[int]]:
        """The pids running in each existing namespace of ours, by host name."""
        ip = _which("ip")
        existing = _existing_netns()
        out: dict[str, list[int]] = {}
        for h in self.hosts:
            if h.netns in existing:
                text = _run([ip, "netns", "pids", h.netns], check=False)
                out[h.name] = [int(w) for w in text.split() if w.isdigit()]
        return out

    def destroy(self) -> None:
        """Kill what still runs in our namespaces, remove them, the veths and the bridge.
        Idempotent; raises SandboxError if something of ours is left."""
        if os.geteuid() != 0:
            raise SandboxError("removing network namespaces needs root")
        ip = _which("ip")
        for _ in range(3):
            pids = [p for group in self.pids().values() for p in group if p != os.getpid()]
            if not pids:
                break
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _wait_pids_gone(pids, 10.0)
        existing = _existing_netns()
        for h in self.hosts:
            if h.netns in existing:
                _run([ip, "netns", "del", h.netns], check=False)
            if _link_exists(h.veth):
                _run([ip, "link", "del", h.veth], check=False)
        if _link_exists(self.bridge):
            _run([ip, "link", "del", self.bridge], check=False)
        deadline = time.monotonic() + 10.0
        while self.exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # veths of deleted namespaces go away asynchronously
        if self.exists():
            raise SandboxError(f"could not remove every namespace and link named {self.prefix}-*")
        self._blocked = frozenset()
        self._rendered = {}

    def __enter__(self) -> NetnsTopology:
        if not self.exists():
            self.create()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()

    # ---- faults

    @property
    def blocked(self) -> frozenset[tuple[str, str]]:
        """The directed (src, dst) pairs whose packets are dropped now."""
        return self._blocked

    def _known(self, *names: str) -> None:
        for name in names:
            if name != OBSERVER:
                self.host(name)

    def cut(self, src: str, dst: str, *, replace: bool = False) -> None:
        """One way: packets from src to dst are dropped (dst's replies to src still flow, but
        nothing src sends reaches dst, so no TCP connection between them completes).
        replace=True: this fault instead of the current ones (in one step, no heal between)."""
        self._known(src, dst)
        if src == dst:
            raise SandboxError(f"cannot cut {src} from itself")
        self._block({(src, dst)}, replace)

    def partition(self, *groups: Iterable[str], replace: bool = False) -> None:
        """Hosts in different groups cannot talk, either way. Hosts named in no group (and the
        observer, unless named) keep talking to everyone: the split is not transitive, as with
        a host that still sees both sides of a broken network."""
        sets = [sorted(set(g)) for g in groups]
        named = [n for g in sets for n in g]
        self._known(*named)
        if len(named) != len(set(named)):
            raise SandboxError(f"a host is in two groups of the partition {sets}")
        if len(sets) < 2:
            raise SandboxError("a partition needs at least two groups")
        pairs = {
            (a, b)
            for i, ga in enumerate(sets)
            for j, gb in enumerate(sets)
            if i != j
            for a in ga
            for b in gb
        }
        self._block(pairs, replace)

    def isolate(self, host: str, *, observer: bool = False, replace: bool = False) -> None:
        """Cut `host` from every other host, both ways; from the observer too if asked."""
        self._known(host)
        others = [n for n in self.names if n != host]
        if observer:
            others.append(OBSERVER)
        self._block({(host, o) for o in others} | {(o, host) for o in others}, replace)

    def heal(self) -> None:
        """Remove every fault."""
        self._blocked = frozenset()
        self._apply()

    def _block(self, pairs: set[tuple[str, str]], replace: bool = False) -> None:
        self._blocked = frozenset(pairs) if replace else self._blocked | frozenset(pairs)
        self._apply()

    def _apply(self) -> None:
        nft = _which("nft")
        for h in self.hosts:
            sources = sorted(self.address(s) for s, d in self._blocked if d == h.name)
            to_observer = (h.name, OBSERVER) in self._blocked
            script = f"flush chain inet {_TABLE} input\nflush chain inet {_TABLE} output\n"
            if sources:
                script += f"add rule inet {_TABLE} input ip saddr {{ {', '.join(sources)} }} drop\n"
            if to_observer:
                script += f"add rule inet {_TABLE} output ip daddr {self.observer_address} drop\n"
            if self._rendered.get(h.name, "") == script:
                continue
            _run(self.exec_argv(h.name, [nft, "-f", "-"]), stdin=script)
            self._rendered[h.name] = script

    def rules(self, host: str) -> str:
        """`nft list table` of our table in `host` (for logs and assertions)."""
        return _run(self.exec_argv(host, [_which("nft"), "list", "table", "inet", _TABLE]))


def _disable_ipv6_root(link: str) -> None:
    path = Path("/proc/sys/net/ipv6/conf", link, "disable_ipv6")
    with suppress(OSError):  # no IPv6 in this kernel: nothing to silence
        path.write_text("1\n")


def _wait_pids_gone(pids: Sequence[int], timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        left = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
            except OSError:
                continue
            if state == "Z":
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    continue  # someone else's zombie: gone from its namespace already
                continue
            left.append(pid)
        if not left:
            return
        time.sleep(0.05)


def pick_subnet() -> int:
    """The first N whose 198.18.N.0/24 no address of this machine uses."""
    used = _used_subnets()
    for n in range(256):
        if n not in used:
            return n
    raise SandboxError(f"every {_NET_BASE}.N.0/{_PREFIX_LEN} is in use on this machine")


@contextmanager
def netns_topology(prefix: str | None = None, subnet: int | None = None) -> Iterator[NetnsTopology]:
    """Create a topology for a `with` block and remove it afterwards, whatever happened."""
    topology = NetnsTopology.plan(prefix, pick_subnet() if subnet is None else subnet)
    topology.create()
    try:
        yield topology
    finally:
        topology.destroy()


# --------------------------------------------------------------------------- the cluster on it


def plan_netns_cluster(net: NetnsTopology, replication: str = "async") -> Topology:
    """broker-a's master on server3 and its slave on server4 (port 10911), nameservers on
    server1 and server2 (9876), the watchdog's metrics on watchdog:9108."""
    if replication not in ("async", "sync"):
        raise SandboxError(f"--replication must be async or sync, not {replication!r}")
    master_role = "SYNC_MASTER" if replication == "sync" else "ASYNC_MASTER"
    master = net.address(PROCESS_HOSTS["broker-a-0"])
    slave = net.address(PROCESS_HOSTS["broker-a-1"])
    return Topology(
        base_port=NETNS_NAMESRV_PORT,
        nameserver_ports=(NETNS_NAMESRV_PORT, NETNS_NAMESRV_PORT),
        metrics_port=NETNS_METRICS_PORT,
        brokers=(
            BrokerPlan(
                "broker-a", 0, master_role, NETNS_BROKER_PORT, "broker-a.properties", host=master
            ),
            BrokerPlan(
                "broker-a", 1, "SLAVE", NETNS_BROKER_PORT, "broker-a-s.properties", host=slave
            ),
        ),  # fmt: skip
        nameserver_hosts=(net.address("server1"), net.address("server2")),
        metrics_host=net.address("watchdog"),
    )


@dataclass(frozen=True)
class SshAccess:
    """How the watchdog host logs into the others: root, one client key, one known_hosts."""

    user: str
    port: int
    client_key: str
    known_hosts: str

    def to_doc(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "port": self.port,
            "client_key": self.client_key,
            "known_hosts": self.known_hosts,
        }


def netns_watchdog_toml_text(
    directory: Path,
    topology: Topology,
    net: NetnsTopology,
    ssh: SshAccess,
    python: str,
    *,
    plugin_secret_file: Path | None = None,
) -> str:
    """The watchdog config of a --netns sandbox: brokers reached over SSH, the secondary check
    run on `vantage`. The daemon itself runs in the `watchdog` namespace. With
    `plugin_secret_file` (--promotion inplace) it ends in a [failover] table that promotes in
    place, as watchdog_toml_text's does."""
    watchdog_ns = net.host("watchdog").netns
    out = [
        "# written by rmq-watchdog sandbox --netns: run the daemon inside the watchdog host,",
        f"#   ip netns exec {watchdog_ns} {python} -m watchdog run \\",
        f"#     -c {directory / 'watchdog.toml'}",
        f"# or {directory / 'run-watchdog.sh'}",
        f"cluster_name = {toml_str(CLUSTER_NAME)}",
        f"nameservers = {toml_list(topology.nameserver_addrs)}",
        f"state_dir = {toml_str(str(directory / 'watchdog-state'))}",
    ]
    for name in SSH_HOSTS:
        out += [
            "",
            f"[hosts.{name}]",
            'kind = "ssh"',
            f"address = {toml_str(net.address(name))}",
            f"port = {ssh.port}",
            f"user = {toml_str(ssh.user)}",
            f"known_hosts = {toml_str(ssh.known_hosts)}",
            f"client_keys = {toml_list([ssh.client_key])}",
        ]
    out += [
        "",
        "[metrics]",
        f"listen = {toml_str(f'{topology.metrics_host}:{topology.metrics_port}')}",
        "",
        "# the master checked from a second vantage point, so a hung master can be confirmed",
        "[[secondary_checks]]",
        'name = "vantage"',
        'host = "vantage"',
        f"command = {toml_list([python, '-m', 'watchdog.ping', '{addr}'])}",
    ]
    for broker, proc in zip(topology.brokers, ("broker-a-0", "broker-a-1"), strict=True):
        out += broker_table(broker, directory, PROCESS_HOSTS[proc], python)
    if plugin_secret_file is not None:
        out += [
            "",
            "# the brokers run the in-place promotion plug-in (broker-plugin/README.md)",
            "[failover]",
            'promotion = "inplace"',
            f"plugin_secret_file = {toml_str(str(plugin_secret_file))}",
        ]
    return "\n".join(out) + "\n"


def run_watchdog_script(directory: Path, net: NetnsTopology, python: str) -> str:
    """DIR/run-watchdog.sh: the daemon inside the watchdog host, extra arguments passed on."""
    argv = net.exec_argv("watchdog", [python, "-m", "watchdog", "run", "-c"])
    quoted = " ".join(shlex.quote(a) for a in [*argv, str(directory / "watchdog.toml")])
    return (
        "#!/bin/sh\n"
        "# written by rmq-watchdog sandbox --netns: the daemon in the watchdog namespace\n"
        f'exec {quoted} "$@"\n'
    )
