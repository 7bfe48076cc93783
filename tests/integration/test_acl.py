"""ACL-enabled RocketMQ 4.9.7 (`sandbox up --acl`): the watchdog signs as ACL 1.0 does.

One sandbox for the module (CI time): aclEnable=true on both brokers, plain_acl.yml with the
watchdog's admin account and a clients' account, no white address, so nothing here passes
unsigned. The tests run in file order and only the last one changes the cluster (kill -9 of
the master):
1. the right keys: status sees roles and offsets, check finds the account admin, the canary's
   librocketmq client (signing with the same account) writes and reads back;
2. wrong keys: status and check each give one error naming the refused access key with the
   broker's reason, a forced failover is refused for it, a daemon running on them plans and
   journals nothing;
3. the right keys: the daemon promotes the slave after kill -9 of the master, its canary step
   included.
No secret key appears in any output, log, journal or state file the watchdog wrote.

First, with a sandbox of its own (`up --acl --promotion inplace`, down before the shared one
starts): the plug-in's requests pass the broker's ACL hook (signed after their MAC, which leaves
ACL's fields out) and nothing else: wrong ACL keys are one AclRefused, a wrong plug-in secret
one "bad mac", and the daemon promotes the slave in place after kill -9 of the master.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import sandbox_cli, stop_sandbox
from tests.integration.daemon_harness import Daemon, StateDir, Topology, cli, registrations
from watchdog.act import run_canary
from watchdog.config import load_config, read_plugin_secret
from watchdog.model import AclCredentials, Secret
from watchdog.probe import client_pool
from watchdog.remoting import (
    AclRefused,
    PluginUnauthorized,
    RemotingClient,
    get_broker_config,
    get_broker_runtime_info,
    get_plugin_info,
    promote_in_place,
)
from watchdog.tools.sandbox import Sandbox
from watchdog.tools.sandbox._acl import acl_credentials

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

A0, A1 = "broker-a:0", "broker-a:1"
ADMIN = "rmq-watchdog-admin"
WRONG_SECRET = "wrong-Secret-for-the-admin-0000"
REFUSED = f"Check signature failed for accessKey={ADMIN}"


def _acl_sandbox(directory: Path, *flags: str) -> Iterator[Sandbox]:
    began = time.monotonic()
    result = sandbox_cli("up", "--dir", str(directory), "--acl", *flags, "--tls", "disabled")
    if result.returncode != 0:
        stop_sandbox(directory)
        pytest.fail(f"sandbox up --acl failed (exit {result.returncode}):\n{result.stderr}")
    print(
        f"[acl timing] sandbox up {' '.join(('--acl', *flags))}: {time.monotonic() - began:.1f} s"
    )
    try:
        yield Sandbox(directory)
    finally:
        stop_sandbox(directory)


@pytest.fixture(scope="module")
def acl_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from _acl_sandbox(tmp_path_factory.mktemp("sandbox-acl"))


@pytest.fixture
def acl_inplace_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from _acl_sandbox(
        tmp_path_factory.mktemp("sandbox-acl-inplace"), "--promotion", "inplace"
    )


def _secrets(box: Sandbox) -> list[str]:
    admin = acl_credentials(box.info())
    client = acl_credentials(box.info(), "client")
    assert admin is not None and client is not None
    return [admin.secret_key.reveal(), client.secret_key.reveal(), WRONG_SECRET]


def _no_secret_in(texts: list[str], box: Sandbox) -> None:
    for secret in _secrets(box):
        for text in texts:
            assert secret not in text


def _written_by_the_watchdog(state_dir: Path) -> list[str]:
    return [p.read_text() for p in state_dir.rglob("*") if p.is_file() and p.suffix != ".sock"]


def _wrong_config(box: Sandbox, tmp_path: Path) -> Path:
    """The sandbox's watchdog.toml with the admin's access key but a wrong secret key (a 0600
    file), and a state dir of its own."""
    secret = tmp_path / "wrong.secret"
    secret.write_text(WRONG_SECRET + "\n")
    secret.chmod(0o600)
    text = box.config_path.read_text()
    lines = []
    for line in text.splitlines():
        if line.startswith("secret_key_file = "):
            line = f"secret_key_file = {json.dumps(str(secret))}"
        elif line.startswith("state_dir = "):
            line = f"state_dir = {json.dumps(str(tmp_path / 'state-wrong'))}"
        lines.append(line)
    path = tmp_path / "wrong.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _signed_config(addr: str, credentials: AclCredentials) -> dict[str, str]:
    async def ask() -> dict[str, str]:
        client = RemotingClient(addr, connect_timeout_seconds=1.0, credentials=credentials)
        try:
            return await get_broker_config(client, timeout_seconds=3.0)
        finally:
            await client.close()

    return asyncio.run(ask())


def _call(addr: str, credentials: AclCredentials, call: Callable[[RemotingClient], Any]) -> Any:
    async def ask() -> Any:
        client = RemotingClient(addr, connect_timeout_seconds=1.0, credentials=credentials)
        try:
            return await call(client)
        finally:
            await client.close()

    return asyncio.run(ask())


def test_in_place_promotion_signed_for_acl(acl_inplace_box: Sandbox, tmp_path: Path) -> None:
    box = acl_inplace_box
    top = Topology.of(box)
    admin = acl_credentials(box.info())
    assert admin is not None
    plugin_secret = read_plugin_secret(Path(box.info()["plugin_secret_file"]))
    slave, pid = top.addrs[A1], box.pid(A1)
    runtime = _call(slave, admin, lambda c: get_broker_runtime_info(c, timeout_seconds=3.0))

    def promote(credentials: AclCredentials, secret: bytes) -> Any:
        return _call(
            slave,
            credentials,
            lambda c: promote_in_place(
                c,
                secret=secret,
                role="ASYNC_MASTER",
                expect_max_phy_offset=int(runtime["commitLogMaxOffset"]),
                epoch=1,
                timeout_seconds=20.0,
            ),
        )

    # Wrong ACL keys: the broker's ACL hook refuses the request before the plug-in sees it.
    with pytest.raises(AclRefused) as refused:
        promote(AclCredentials(ADMIN, Secret(WRONG_SECRET)), plugin_secret)
    assert refused.value.reason == REFUSED
    # The right ACL keys and a wrong plug-in secret: the plug-in's MAC refuses.
    with pytest.raises(PluginUnauthorized, match="bad mac"):
        promote(admin, b"not-the-plug-in-secret-0123456789")
    info = _call(slave, admin, lambda c: get_plugin_info(c, timeout_seconds=3.0))
    assert info is not None and (info.broker_role, info.last_epoch) == ("SLAVE", 0)
    # A forced failover on the wrong keys: one line, nothing done.
    forced = cli(
        "failover", "-c", str(_wrong_config(box, tmp_path)), "--broker-name", "broker-a",
        "--force", "--yes",
    )  # fmt: skip
    assert forced.returncode == 1 and forced.stdout.strip() == (
        "refused: no slave of broker-a can be promoted: broker-a:1 refuses the watchdog's ACL "
        f"credentials ({REFUSED})"
    ), forced.stdout + forced.stderr

    # The right keys: kill -9 of the master, the daemon promotes the slave in its own JVM.
    log = tmp_path / "daemon.log"
    daemon = Daemon(top.config, log)
    try:
        daemon.wait_event(
            lambda e: e.get("state") == "HEALTHY" and "cycle" in e, 60, "a HEALTHY cycle"
        )
        box.kill(A0, "KILL")
        killed_at = time.time()
        failover = top.state_dir.wait_finished(120)
    finally:
        assert daemon.stop() == 0
    journal = top.state_dir.journal(failover)
    assert top.state_dir.outcome(failover) == "succeeded", journal[-3:]
    assert dict(top.state_dir.plan(failover)["details"])["path"].startswith("in place: ")
    done = top.state_dir.step_event(failover, "promote_in_place")
    assert done is not None and done["detail"].startswith("promoted in place as ASYNC_MASTER")
    assert not [e for e in journal if e["event"] == "fallback_started"], journal
    assert box.pid(A1) == pid  # the same JVM: not restarted
    canary = top.state_dir.step_event(failover, "canary")
    assert canary is not None and "read back" in canary["detail"], journal
    promoted = top.state_dir.step_event(failover, "wait_master")
    assert promoted is not None
    print(f"[acl timing] in place: kill -9 -> id 0 everywhere: {promoted['at'] - killed_at:.1f} s")
    live = _signed_config(slave, admin)
    assert (live["brokerId"], live["brokerRole"]) == ("0", "ASYNC_MASTER")
    tables = registrations(top.nameservers)
    assert all(t is not None and t["broker-a"].get(0) == slave for t in tables.values())
    texts = [log.read_text(), *_written_by_the_watchdog(top.state_dir.path)]
    _no_secret_in(texts, box)
    assert not [t for t in texts if plugin_secret.decode() in t]


def test_the_right_keys_status_check_and_canary(acl_box: Sandbox) -> None:
    top = Topology.of(acl_box)
    status = cli("status", "-c", str(top.config), "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert report["problems"] == []
    assert [(b["role"], b["commitlog_max_offset"] is not None) for b in report["brokers"]] == [
        ("ASYNC_MASTER", True),
        ("SLAVE", True),
    ]
    check = cli("check", "-c", str(top.config))
    assert check.returncode == 0, check.stdout
    assert (
        f"[ok  ] acl: the brokers accept access key {ADMIN} with the admin right the canary "
        "needs (2 asked)"
    ) in check.stdout.splitlines()

    # The plan a forced failover of the live master would run, printed: every command, every
    # properties diff, no secret.
    dry = cli(
        "failover", "-c", str(top.config), "--broker-name", "broker-a", "--force", "--dry-run"
    )
    assert dry.returncode == 0 and A1 in dry.stdout, dry.stdout + dry.stderr
    config = load_config(top.config)

    async def canary() -> object:
        pool = client_pool(config)
        try:
            return await run_canary(
                list(config.nameservers),
                top.addrs[A0],
                "broker-a",
                topic="RMQ_WATCHDOG_CANARY_broker-a",
                timeout_seconds=30.0,
                pool=pool,
                credentials=config.acl_credentials(),
            )
        finally:
            await pool.close_all()

    result = asyncio.run(canary())
    assert getattr(result, "is_ok", False), result
    shown = [status.stdout, status.stderr, check.stdout, check.stderr, dry.stdout, dry.stderr]
    _no_secret_in([*shown, repr(result)], acl_box)


def test_wrong_keys_are_one_clear_error_and_no_failover(acl_box: Sandbox, tmp_path: Path) -> None:
    wrong = _wrong_config(acl_box, tmp_path)
    outputs: list[str] = []

    status = cli("status", "-c", str(wrong))
    outputs += [status.stdout, status.stderr]
    assert status.returncode == 1, status.stdout
    problems = [line for line in status.stdout.splitlines() if line.startswith("PROBLEM:")]
    assert len(problems) == 1 and REFUSED in problems[0], status.stdout

    check = cli("check", "-c", str(wrong))
    outputs += [check.stdout, check.stderr]
    assert check.returncode == 1, check.stdout
    acl_lines = [line for line in check.stdout.splitlines() if line.startswith("[FAIL] acl:")]
    assert len(acl_lines) == 1 and REFUSED in acl_lines[0], check.stdout
    assert "a failover could NOT run" in check.stdout

    forced = cli("failover", "-c", str(wrong), "--broker-name", "broker-a", "--force", "--yes")
    outputs += [forced.stdout, forced.stderr]
    assert forced.returncode == 1, forced.stdout
    assert forced.stdout.strip() == (
        "refused: no slave of broker-a can be promoted: broker-a:1 refuses the watchdog's ACL "
        f"credentials ({REFUSED})"
    )

    # A daemon on the wrong keys, for longer than down_after: the brokers answer (refusing),
    # so no master is down; each cycle says why nothing could be done; nothing is planned.
    log = tmp_path / "daemon-wrong.log"
    daemon = Daemon(wrong, log)
    try:
        started = time.time()
        daemon.wait_event(
            lambda e: "cycle" in e and e.get("cycle", 0) >= 5, 60, "five cycles", after=started
        )
    finally:
        assert daemon.stop() == 0
    cycles = [e for e in daemon.events() if "cycle" in e and e.get("broker_name") == "broker-a"]
    assert cycles and {e["state"] for e in cycles} == {"DEGRADED"}
    assert all(REFUSED in e["event"] for e in cycles), cycles[-1]
    state_dir = StateDir(tmp_path / "state-wrong")
    assert state_dir.failover_ids() == []
    assert not any("failover" in str(e.get("event", "")) for e in daemon.events())
    outputs += [log.read_text(), *_written_by_the_watchdog(state_dir.path)]
    _no_secret_in(outputs, acl_box)


def test_the_right_keys_fail_over_after_kill_9(acl_box: Sandbox, tmp_path: Path) -> None:
    """The last test: kills the master."""
    top = Topology.of(acl_box)
    admin = acl_credentials(acl_box.info())
    assert admin is not None
    log = tmp_path / "daemon.log"
    daemon = Daemon(top.config, log)
    try:
        daemon.wait_event(
            lambda e: e.get("state") == "HEALTHY" and "cycle" in e, 60, "a HEALTHY cycle"
        )
        acl_box.kill(A0, "KILL")
        killed_at = time.time()
        failover = top.state_dir.wait_finished(150)
        journal = top.state_dir.journal(failover)
        assert top.state_dir.outcome(failover) == "succeeded", journal[-3:]
        promoted = top.state_dir.step_event(failover, "wait_master")
        assert promoted is not None
        took = promoted["at"] - killed_at
        print(f"[acl timing] kill -9 -> promoted on every nameserver: {took:.1f} s")
        canary = top.state_dir.step_event(failover, "canary")
        assert canary is not None, journal
        assert "read back" in json.dumps(canary), canary
    finally:
        assert daemon.stop() == 0
    tables = registrations(top.nameservers)
    assert all(t is not None and t["broker-a"].get(0) == top.addrs[A1] for t in tables.values())
    live = _signed_config(top.addrs[A1], admin)
    assert (live["brokerId"], live["brokerRole"]) == ("0", "ASYNC_MASTER")
    _no_secret_in([log.read_text(), *_written_by_the_watchdog(top.state_dir.path)], acl_box)
