"""`check`: compare the config with what the cluster reports and with what a failover would need."""

from __future__ import annotations

import asyncio
import os
import posixpath
import pwd
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from ..config import BrokerConfig, SecondaryCheck, WatchdogConfig
from ..decide._plan import fence_command_argv
from ..hosts import Host, HostError
from ..model import BrokerObservation, ClusterSnapshot, PropertiesFile, format_utc
from ..remoting import ClientPool
from ._advice import advise
from ._advice_gather import gather_advice_facts
from ._check_acl import acl_findings
from ._findings import Finding, can_fail_over, findings_json

__all__ = [
    "Finding",
    "advice_findings",
    "block_findings",
    "can_fail_over",
    "findings_json",
    "run_checks",
]


@dataclass(frozen=True)
class _ControlPath:
    is_ok: bool
    findings: tuple[Finding, ...]


async def _check_control_path(broker: BrokerConfig, host: Host) -> _ControlPath:
    findings: list[Finding] = []
    ok = True
    try:
        text = (await host.read_file(broker.properties)).decode("latin-1")
    except HostError as exc:
        findings.append(
            Finding(
                "error",
                broker.key,
                f"properties file unreadable: {exc}",
                True,
                id="control.properties-unreadable",
            )
        )
        ok = False
    else:
        props = PropertiesFile.parse(text)
        name = props.get("brokerName")
        if name != broker.broker_name:
            findings.append(
                Finding(
                    "error",
                    broker.key,
                    f"{broker.properties} says brokerName={name!r}, config says "
                    f"{broker.broker_name!r}",
                    True,
                    id="control.properties-mismatch",
                )
            )
            ok = False
        else:
            findings.append(
                Finding(
                    "ok",
                    broker.key,
                    f"properties {broker.properties} readable on {host.name} "
                    f"(brokerId={props.get('brokerId')}, brokerRole={props.get('brokerRole')})",
                    id="control.properties",
                )
            )
    findings.extend(await _properties_dir_findings(broker, host))
    if any(f.blocks_failover for f in findings):
        ok = False
    commands = [("start", broker.start), ("stop", broker.stop)]
    if broker.kill:
        commands.append(("kill", broker.kill))
    for what, argv in commands:
        try:
            present = await host.has_command(argv[0])
        except HostError as exc:
            findings.append(
                Finding("error", broker.key, f"host {host.name}: {exc}", True, id="control.host")
            )
            return _ControlPath(False, tuple(findings))
        if not present:
            findings.append(
                Finding(
                    "error",
                    broker.key,
                    f"{what} command {argv[0]!r} not found on {host.name}",
                    True,
                    id="control.command-missing",
                )
            )
            ok = False
    if ok:
        names = "/".join(what for what, _ in commands)
        findings.append(
            Finding(
                "ok", broker.key, f"{names} commands present on {host.name}", id="control.commands"
            )
        )
    return _ControlPath(ok, tuple(findings))


async def _properties_dir_findings(broker: BrokerConfig, host: Host) -> list[Finding]:
    """A failover writes beside the properties (atomic rewrite, backup, epoch record): the
    directory must be writable for the watchdog's user on that host."""
    directory = posixpath.dirname(broker.properties) or "."
    try:
        result = await host.run(["test", "-w", directory], timeout_seconds=10.0)
    except HostError as exc:
        return [Finding("error", broker.key, f"host {host.name}: {exc}", True, id="control.host")]
    if result.exit_code == 0:
        return [
            Finding("ok", broker.key, f"{directory} writable on {host.name}", id="control.writable")
        ]
    if result.exit_code == 1:
        return [
            Finding(
                "error",
                broker.key,
                f"{directory} is not writable on {host.name} for the watchdog's user: a "
                "failover could not rewrite the properties, keep a backup or record the epoch "
                "(give that user write access to the directory; under systemd also "
                "ReadWritePaths=)",
                True,
                id="control.not-writable",
            )
        ]
    return [
        Finding(
            "warn",
            broker.key,
            f"could not test write access to {directory} on {host.name}: {result.summary()}",
            id="control.writable-unknown",
        )
    ]


async def _secondary_check_finding(check: SecondaryCheck, host: Host, target_addr: str) -> Finding:
    """Run a secondary check once against the master: a check that cannot run on its host
    would leave a hung master to the nameservers' 120 s timeout, without a word."""
    subject = f"secondary check {check.name}"
    argv = [part.replace("{addr}", target_addr) for part in check.command]
    try:
        result = await host.run(argv, timeout_seconds=check.timeout_seconds)
    except HostError as exc:
        return Finding("error", subject, f"host {host.name}: {exc}", id="secondary.host")
    if result.exit_code == 0:
        return Finding(
            "ok", subject, f"reaches {target_addr} from host {host.name}", id="secondary.reaches"
        )
    if result.exit_code == 1:
        return Finding(
            "warn",
            subject,
            f"runs on host {host.name} but does not reach {target_addr}: "
            f"{result.stdout.strip()[:200] or result.summary()}",
            id="secondary.not-reached",
        )
    return Finding(
        "error",
        subject,
        f"does not run on host {host.name} ({result.summary()}): a hung master would be "
        "confirmed only by the nameservers' 120 s timeout; install rmq-watchdog (for "
        "rmq-watchdog-ping) on that host or fix the command",
        id="secondary.does-not-run",
    )


def _broker_findings(
    snapshot: ClusterSnapshot, b: BrokerObservation, configured_id: int
) -> list[Finding]:
    key = f"{b.broker_name}:{configured_id}"
    if not b.is_up:
        return [Finding("warn", key, f"{b.addr} does not answer: {b.error}", id="broker.down")]
    if b.acl_refusal is not None:
        return []  # it answered, refusing the watchdog's account: the acl finding says so
    found = [
        Finding(
            "ok",
            key,
            f"{b.addr} answers as {b.role} brokerId={b.reported_broker_id} "
            f"offset={b.commitlog_max_offset} ({b.version})",
            id="broker.answers",
        )
    ]
    if b.reported_broker_id is not None and b.reported_broker_id != configured_id:
        found.append(
            Finding(
                "warn",
                key,
                f"runs with brokerId={b.reported_broker_id}, configured as {configured_id} "
                "(expected after a failover)",
                id="broker.id-changed",
            )
        )
    # A nameserver that does not list it at all: the advice's nameservers.partial-registration.
    for ns in snapshot.nameservers_up():
        ids = ns.ids_of(b.addr)
        if ids and b.reported_broker_id is not None and b.reported_broker_id not in ids:
            found.append(
                Finding(
                    "warn",
                    key,
                    f"nameserver {ns.addr} lists it as id {ids}, it reports {b.reported_broker_id}",
                    id="broker.id-mismatch",
                )
            )
    return found


def block_findings(
    config: WatchdogConfig, state_dir_state: object, now_wall: float
) -> list[Finding]:
    """From state.json: groups whose automatic failovers are blocked after one (anti-flap),
    and groups whose master role a failover lowered."""
    from ..act import WatchdogState

    if not isinstance(state_dir_state, WatchdogState):
        return []
    findings = []
    for name in config.group_names():
        record = state_dir_state.group(name)
        if record.lowered_from:
            findings.append(
                Finding(
                    "warn",
                    f"group {name}",
                    f"master role lowered from {record.lowered_from} by failover "
                    f"{record.lowered_by} (no slave was left): set brokerRole="
                    f"{record.lowered_from} again once a slave is in sync",
                    id="group.role-lowered",
                )
            )
        if record.is_blocked(now_wall) and record.blocked_until is not None:
            until = format_utc(record.blocked_until)
            findings.append(
                Finding(
                    "error",
                    f"group {name}",
                    f"automatic failovers blocked until {until} ({record.block_reason}); "
                    f"`rmq-watchdog ack -c FILE --broker-name {name}` lifts the block",
                    True,
                    id="group.blocked",
                )
            )
    return findings


# Loaded in a child process, as the canary does: a native library that crashes must not take
# `check` down with it.
_CLIENT_PROBE = "from rocketmq.client import Producer, PullConsumer; print('ok')"


async def _check_canary_client() -> Finding:
    """The canary's RocketMQ client (librocketmq through ctypes) loads on this machine."""
    subject = "canary client"
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CLIENT_PROBE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    except (OSError, TimeoutError) as exc:
        return Finding(
            "error", subject, f"cannot start {sys.executable}: {exc}", True, id="canary.client"
        )
    if proc.returncode == 0 and out.strip() == b"ok":
        return Finding(
            "ok", subject, "the rocketmq client (librocketmq) loads", id="canary.client-loads"
        )
    last = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
    return Finding(
        "error",
        subject,
        f"the rocketmq client does not load ({last}): every failover would fail at its canary "
        "step after promoting; install the package's dependencies (`pip install rmq-watchdog` "
        "brings rocketmq==0.4.4 on Linux x86_64) or set [failover] canary = false",
        True,
        id="canary.client",
    )


def _fence_finding(config: WatchdogConfig, name: str, master_addr: str) -> Finding:
    """How the current master would be fenced before a promotion (no fence, no promotion)."""
    broker = next((b for b in config.group(name) if b.addr == master_addr), None)
    subject = f"group {name}"
    if broker is None:
        return Finding(
            "warn",
            subject,
            f"master {master_addr} is not in the configuration",
            id="group.master-unconfigured",
        )
    grace = config.failover.fence_grace_seconds
    paths = [f"rewrite + stop on host {broker.host}"]
    command = fence_command_argv(broker, config)
    if command:
        paths.append(f"fence command {' '.join(command)}")
    paths.append(f"the nameservers' drop + fence_grace {grace:g} s")
    text = "fence paths for " + broker.key + ": " + "; ".join(paths)
    if not command:
        return Finding(
            "ok",
            subject,
            text + " (no fence_command: a master hung on a host that cannot be reached waits "
            "for the nameservers' 120 s)",
            id="group.fence",
        )
    return Finding("ok", subject, text, id="group.fence")


def state_dir_finding(state_dir: str, euid: int) -> Finding | None:
    """A state dir owned by another user: what this command writes there (a failover's
    journal, state.json after `ack`) would not be the daemon's to write again."""
    try:
        owner = os.stat(state_dir).st_uid
    except OSError:
        return None
    if owner == euid:
        return None
    try:
        name = pwd.getpwuid(owner).pw_name
    except KeyError:
        name = str(owner)
    return Finding(
        "warn",
        "state",
        f"{state_dir} belongs to {name}, this command runs as uid {euid}: run commands as "
        f"that user (e.g. `sudo -u {name} rmq-watchdog ...`) so the files they write stay the "
        "daemon's",
        id="state.owner",
    )


async def run_checks(
    config: WatchdogConfig, snapshot: ClusterSnapshot, hosts: Mapping[str, Host]
) -> list[Finding]:
    findings: list[Finding] = []
    owner = state_dir_finding(config.state_dir, os.geteuid())
    if owner is not None:
        findings.append(owner)
    up = snapshot.nameservers_up()
    for ns in snapshot.nameservers:
        if ns.is_up:
            findings.append(
                Finding("ok", f"nameserver {ns.addr}", "answers cluster info", id="nameserver.up")
            )
        else:
            findings.append(
                Finding("warn", f"nameserver {ns.addr}", f"down: {ns.error}", id="nameserver.down")
            )
    if len(up) * 2 <= len(snapshot.nameservers):
        findings.append(
            Finding(
                "error",
                "nameservers",
                f"only {len(up)}/{len(snapshot.nameservers)} answer: a promotion could not be "
                "verified on a majority",
                True,
                id="nameservers.no-majority",
            )
        )

    findings.extend(await acl_findings(config, snapshot))
    control = await asyncio.gather(*(_check_control_path(b, hosts[b.host]) for b in config.brokers))
    control_ok = {b.key: c.is_ok for b, c in zip(config.brokers, control, strict=True)}
    for b, c in zip(config.brokers, control, strict=True):
        obs = next(o for o in snapshot.brokers if o.addr == b.addr)
        findings.extend(_broker_findings(snapshot, obs, b.broker_id))
        findings.extend(c.findings)

    if config.failover.canary:
        findings.append(await _check_canary_client())

    if config.secondary_checks:
        targets = [snapshot.master_of(name) for name in config.group_names()]
        target = next((m.addr for m in targets if m is not None), config.brokers[0].addr)
        findings.extend(
            await asyncio.gather(
                *(
                    _secondary_check_finding(c, hosts[c.host], target)
                    for c in config.secondary_checks
                )
            )
        )

    for name in config.group_names():
        subject = f"group {name}"
        master = snapshot.master_of(name)
        claimants = snapshot.master_claimants(name)
        if len(claimants) > 1:
            addrs = ", ".join(b.addr for b in claimants)
            findings.append(
                Finding(
                    "error",
                    subject,
                    f"split brain: {addrs} all answer as master",
                    id="group.split-brain",
                )
            )
        elif master is None:
            findings.append(
                Finding("warn", subject, "no master answers or is registered", id="group.no-master")
            )
        else:
            findings.append(Finding("ok", subject, f"master is {master.addr}", id="group.master"))
        candidates = [
            b
            for b in config.group(name)
            if not b.no_promote
            and control_ok[b.key]
            and (master is None or b.addr != master.addr)
            and any(o.addr == b.addr and o.is_up and o.role == "SLAVE" for o in snapshot.brokers)
        ]
        if candidates:
            names = ", ".join(f"{b.key}@{b.addr}" for b in candidates)
            findings.append(
                Finding("ok", subject, f"promotable slave(s): {names}", id="group.promotable")
            )
        else:
            findings.append(
                Finding(
                    "error",
                    subject,
                    "no promotable slave: none is up as SLAVE with a working control path and "
                    "without no_promote",
                    True,
                    id="group.no-promotable-slave",
                )
            )
        if master is not None:
            findings.append(_fence_finding(config, name, master.addr))
    return findings


async def advice_findings(
    config: WatchdogConfig, snapshot: ClusterSnapshot, hosts: Mapping[str, Host], pool: ClientPool
) -> list[Finding]:
    """The seed's operating advice measured on the live cluster (_advice.py says why)."""
    return advise(await gather_advice_facts(config, snapshot, hosts, pool))
