"""rmq-watchdog installed by the README's steps under a real systemd, and what the unit promises.

One container and one sandbox cluster for the whole module (see conftest.py): the README's
install section runs block by block, then each test checks one promise of the unit on the
running service — readiness (Type=notify), the status line, the hardening score, reload with a
bad config, a failover driven by the service (SSH, SFTP and the canary's native client under the
unit's MemoryDenyWriteExecute= and SystemCallFilter=), the JSON journal, the broker-host gate,
the systemd watchdog on a hung daemon, and a clean stop. Tests bring the service back up when
they need it running, so their order does not matter.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from datetime import datetime
from typing import Any

import pytest

from tests.systemd.container import Entry
from tests.systemd.harness import (
    CONFIG,
    MASTER,
    SLAVE,
    UNIT,
    Failover,
    Install,
    daemon_events,
    run_block,
)
from tests.systemd.readme import section_text

pytestmark = pytest.mark.integration

MAX_EXPOSURE = 2.0
# journald's catalog ids of PID 1's "Starting ..." and "Started ..." lines for a unit.
STARTING_ID = "7d4958e842da4a758f6c1cdc7b36dcc5"
STARTED_ID = "39f53479d3a045ac8e11786248231fbf"
# The test's drop-in shortens the unit's WatchdogSec=30s so a hung daemon is killed sooner.
TEST_WATCHDOG_SEC = 5
WATCHDOG_DROPIN = "/etc/systemd/system/rmq-watchdog.service.d/zz-install-test-watchdog.conf"
PROCSUBSET_DROPIN = "/etc/systemd/system/rmq-watchdog.service.d/zz-install-test-procsubset.conf"
BROKER_UNIT = "/etc/systemd/system/rocketmq-broker@.service"
BROKER_CONF = "/opt/rocketmq/conf"


def _at(timestamp: str) -> float:
    """The daemon's ISO-8601 UTC "timestamp" field as Unix seconds."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _realtime(entry: Entry) -> float:
    """When a journal entry was made (the sender's clock if it said, else journald's)."""
    usec = entry.get("_SOURCE_REALTIME_TIMESTAMP") or entry["__REALTIME_TIMESTAMP"]
    return int(usec) / 1_000_000


def _pid1(entries: list[Entry], message_id: str) -> list[Entry]:
    return [e for e in entries if e.get("MESSAGE_ID") == message_id and e.get("_PID") == "1"]


def _block_output(installed: Install, command: str) -> str:
    for block, output in installed.outputs:
        if command in block.commands:
            return output
    raise AssertionError(f"no README block with {command!r} was run: {installed.outputs}")


def test_readme_install_steps_ran(installed: Install) -> None:
    """Every README block either ran at install, runs on a broker host, or says why not."""
    ran = "".join(block.commands for block, _ in installed.outputs)
    for command in (
        "python3 -m venv /opt/rmq-watchdog",
        "useradd --system",
        "install -d -m 0750 -o root -g rmq-watchdog /etc/rmq-watchdog",
        "rmq-watchdog check -c /etc/rmq-watchdog/watchdog.toml",
        "systemctl enable --now rmq-watchdog",
    ):
        assert command in ran, f"the install did not run {command!r}"
    assert installed.broker_host_blocks, "the README has no broker-gate block"
    for block, reason in installed.not_run:
        print(f"not run: README step {block.step} ({reason})")
    assert "a failover could run" in _block_output(installed, "rmq-watchdog check")
    # The files' owners and modes as step 4 made them, after systemd started the unit
    # (ConfigurationDirectory= and StateDirectory= must not have changed the config dir).
    stat = installed.container.run(
        ["stat", "-c", "%n %a %U:%G", "/etc/rmq-watchdog", CONFIG, "/var/lib/rmq-watchdog"]
    ).stdout.splitlines()
    assert stat == [
        "/etc/rmq-watchdog 750 root:rmq-watchdog",
        f"{CONFIG} 640 root:rmq-watchdog",
        "/var/lib/rmq-watchdog 750 rmq-watchdog:rmq-watchdog",
    ], stat


def test_unit_is_active_only_after_ready(installed: Install) -> None:
    """`enable --now` returned once the daemon had finished its first cycle (READY=1 follows
    it): PID 1 logged "Started" after the daemon logged that cycle, not when it forked."""
    container = installed.container
    entries = container.journal(UNIT, after=installed.install_cursor)
    starting, started = _pid1(entries, STARTING_ID), _pid1(entries, STARTED_ID)
    assert starting and started, [e["MESSAGE"] for e in entries[:10]]
    events = daemon_events(entries)
    first_cycle = next(e for e in events if e.get("cycle") == 1 and "decision" in e)
    up = next(e for e in events if e.get("event") == "rmq-watchdog started")
    t_starting, t_started = _realtime(starting[0]), _realtime(started[0])
    t_up, t_cycle = _at(up["timestamp"]), _at(first_cycle["timestamp"])
    print(
        f"Starting -> daemon up {t_up - t_starting:.3f} s -> cycle 1 logged "
        f"{t_cycle - t_starting:.3f} s -> Started (active) {t_started - t_starting:.3f} s"
    )
    assert t_starting < t_up < t_cycle < t_started
    show = container.show(UNIT, "Type", "NotifyAccess", "WatchdogUSec")
    assert show == {"Type": "notify", "NotifyAccess": "main", "WatchdogUSec": "30s"}, show


def test_status_shows_the_daemons_status_line(installed: Install) -> None:
    """The README's `systemctl status rmq-watchdog` shows active (running) and the daemon's
    STATUS= (the latest cycle's summary)."""
    pattern = re.compile(r'Status: "cycle \d+: broker-a [A-Z_]+"')
    at_install = _block_output(installed, "systemctl status rmq-watchdog")
    assert "Active: active (running)" in at_install and pattern.search(at_install), at_install
    installed.ensure_running()
    status = installed.container.run(["systemctl", "status", "--no-pager", UNIT]).stdout
    print(status)
    assert "Active: active (running)" in status and pattern.search(status), status


def test_security_exposure(installed: Install) -> None:
    """`systemd-analyze verify` of the installed unit says nothing; `systemd-analyze security`
    on the loaded unit, inside the container: at most 2.0, and the figure the README states."""
    container = installed.container
    verify = container.run(["systemd-analyze", "verify", f"/etc/systemd/system/{UNIT}"])
    assert not (verify.stdout + verify.stderr).strip(), verify.stdout + verify.stderr
    out = container.run(["systemd-analyze", "security", "--no-pager", UNIT]).stdout
    print(out)
    match = re.search(rf"Overall exposure level for {re.escape(UNIT)}: (\d+\.\d+)", out)
    assert match, out
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE
    stated = re.search(r"exposure (\d+\.\d+)", section_text())
    assert stated and float(stated.group(1)) == exposure, (
        f"the README says exposure {stated and stated.group(1)}, systemd says {exposure}"
    )


def _metrics(installed: Install) -> str:
    url = f"http://{installed.metrics}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def _restart_with_dropin(installed: Install, path: str, text: str | None) -> None:
    """Install (text) or remove (None) a drop-in of the unit, then restart it."""
    container = installed.container
    if text is None:
        container.run(["rm", "-f", path])
    else:
        container.write(path, text)
    container.run(["systemctl", "daemon-reload"])
    container.run(["systemctl", "restart", UNIT])


def test_process_metrics_need_the_procsubset_relaxation(installed: Install) -> None:
    """The unit's ProcSubset=all is a relaxation "for the process_* metrics": with it they are
    exported; with ProcSubset=pid (in a test drop-in) they are not, so it is needed."""
    installed.ensure_running()
    assert installed.container.show(UNIT, "ProcSubset")["ProcSubset"] == "all"
    shipped = _metrics(installed)
    assert "process_start_time_seconds " in shipped and "rmq_watchdog" in shipped
    try:
        _restart_with_dropin(installed, PROCSUBSET_DROPIN, "[Service]\nProcSubset=pid\n")
        assert installed.container.show(UNIT, "ProcSubset")["ProcSubset"] == "pid"
        hidden = _metrics(installed)
    finally:
        _restart_with_dropin(installed, PROCSUBSET_DROPIN, None)
    process = sorted(
        {line.split()[0] for line in hidden.splitlines() if line.startswith("process_")}
    )
    print(f"with ProcSubset=pid, process_* samples: {process}")
    assert "process_start_time_seconds " not in hidden, "ProcSubset=all is not needed"


def test_reload_with_a_bad_config_keeps_the_running_one(installed: Install) -> None:
    container = installed.container
    installed.ensure_running()
    before = container.show(UNIT, "MainPID", "NRestarts")
    good = container.run(["cat", CONFIG]).stdout
    cursor = container.cursor()
    # A bare number where a duration belongs: valid TOML, refused by the config's schema.
    container.sh(f"printf '\\n[probe]\\ninterval = 5\\n' >> {CONFIG}")
    try:
        reload = container.run(["systemctl", "reload", UNIT], check=False)
        # ExecReload= validates the file first: the reload fails and the daemon is never
        # signalled (its own refusal of a bad file on SIGHUP is tested in tests/integration).
        assert reload.returncode != 0, reload

        def rejected(entries: list[Entry]) -> bool:
            return any("probe.interval" in str(e.get("MESSAGE", "")) for e in entries)

        entries = container.wait_journal(
            "the reload's config check naming probe.interval", rejected, UNIT, after=cursor
        )
        assert not any(
            e["event"].startswith("reload") for e in daemon_events(entries)
        ), "the daemon was signalled with a bad config"
        after = container.show(UNIT, "MainPID", "NRestarts", "ActiveState", "SubState")
        assert after == {**before, "ActiveState": "active", "SubState": "running"}, after
    finally:
        container.run(["cp", "/dev/stdin", CONFIG], stdin=good)  # keeps its owner and mode
    cursor = container.cursor()
    container.run(["systemctl", "reload", UNIT])
    container.wait_journal(
        "'configuration reloaded'",
        lambda es: any(e["event"] == "configuration reloaded" for e in daemon_events(es)),
        UNIT,
        own=True,
        after=cursor,
    )


def test_failover_driven_by_the_service(installed: Install, failover: Failover) -> None:
    """kill -9 of the master on the host: the daemon in the container fails over through SSH
    and SFTP, and its canary (librocketmq, in a child) writes and reads through the new master
    under MemoryDenyWriteExecute=yes and SystemCallFilter=."""
    container = installed.container
    hardening = container.show(UNIT, "MemoryDenyWriteExecute", "SystemCallFilter", "User")
    assert hardening["MemoryDenyWriteExecute"] == "yes" and hardening["User"] == "rmq-watchdog"
    assert hardening["SystemCallFilter"], hardening
    events = failover.events
    for event in events:
        if event["event"].startswith(("step", "failover")):
            print(event["event"], "|", event.get("detail", ""))
    outcome = next(e for e in events if e["event"].startswith(("failover succeeded", "failover f")))
    assert outcome["event"].startswith("failover succeeded"), outcome
    done = {e["step"]: e for e in events if e["event"].startswith("step ") and "step" in e}
    assert {"rewrite", "stop", "start", "wait_master", "canary", "record_epoch"} <= set(done)
    assert "read back" in done["canary"]["detail"], done["canary"]
    print(f"kill -> failover succeeded: {failover.kill_to_outcome_seconds:.1f} s")

    # The commands went through sshd and the files through its SFTP subsystem.
    log = installed.sshd.log_path.read_text(errors="replace")
    assert "Accepted publickey" in log and "subsystem 'sftp'" in log, log[-2000:]
    # On the host: the new master's properties, the old master's, the epoch records.
    props = {
        b: installed.sandbox_dir / n
        for b, n in ((MASTER, "broker-a.properties"), (SLAVE, "broker-a-s.properties"))
    }
    assert "brokerRole=SLAVE" in props[MASTER].read_text()
    assert "brokerId=0" in props[SLAVE].read_text()
    epoch = (installed.sandbox_dir / "broker-a.properties.epoch").read_text()
    assert f"master_addr={installed.addrs[SLAVE]}" in epoch and "may_be_master=false" in epoch
    # The README's "run every command as the service user": history reads the daemon's journal.
    history = container.run(
        ["runuser", "-u", "rmq-watchdog", "--", "rmq-watchdog", "history", "-c", CONFIG, "--json"]
    ).stdout
    assert failover.failover_id in history and "succeeded" in history, history


def test_ctypes_callbacks_work_under_memory_deny_write_execute(installed: Install) -> None:
    """The canary sends synchronously and pulls (no ctypes callback); librocketmq's binding also
    has callback APIs (async send, push consumer). A ctypes callback needs no writable+executable
    memory with the container's libffi: one runs with the unit's MemoryDenyWriteExecute= and
    system call filter, as its user, in the installed venv (what the unit's comment says)."""
    code = """
import ctypes, mmap
f = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
print(f(41))
try:  # the control: MemoryDenyWriteExecute= is in force, writable+executable memory is refused
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("W+X allowed")
except OSError:
    print("W+X refused")
"""
    argv = ["systemd-run", "--quiet", "--wait", "--pipe", "--property=User=rmq-watchdog"]
    for name in ("MemoryDenyWriteExecute", "SystemCallFilter", "SystemCallArchitectures"):
        value = installed.container.show(UNIT, name)[name]
        argv.append(f"--property={name}={value}")
    result = installed.container.run([*argv, "/opt/rmq-watchdog/bin/python3", "-c", code])
    assert result.stdout.split() == ["42", "W+X", "refused"], result


def test_journal_holds_the_json_decision_lines(installed: Install, failover: Failover) -> None:
    """`journalctl -u rmq-watchdog -o cat`: the daemon's lines are JSON, one decision per group
    and cycle, the promotion among them."""
    container = installed.container
    text = container.run(["journalctl", "-u", "rmq-watchdog", "-o", "cat", "--no-pager"]).stdout
    json_lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    decisions = [e for e in json_lines if "decision" in e]
    assert decisions, text[-3000:]
    assert all({"cycle", "broker_name", "state", "event"} <= set(e) for e in decisions)
    kinds = {e["decision"] for e in decisions}
    assert {"no_action", "promote"} <= kinds, kinds
    promote = next(e for e in decisions if e["decision"] == "promote")
    print(json.dumps(promote))
    # Every line the unit's own processes wrote (not PID 1's, nor ExecReload='s config check,
    # a one-shot command whose one line is for a human) is JSON.
    unit_lines = [
        e["MESSAGE"]
        for e in container.journal(UNIT, own=True)
        if "--config-only" not in str(e.get("_CMDLINE", ""))
    ]
    not_json = [m for m in unit_lines if not m.startswith("{")]
    assert not not_json, not_json[:10]


def _start_broker(installed: Install, instance: str) -> dict[str, Any]:
    container = installed.container
    cursor = container.cursor()
    unit = f"rocketmq-broker@{instance}.service"
    result = container.run(["systemctl", "start", unit], check=False)
    show = container.show(unit, "ActiveState", "Result", "ExecMainStartTimestampMonotonic")
    log = [e["MESSAGE"] for e in container.journal(unit, after=cursor)]
    print(f"{unit}: exit {result.returncode}, {show}\n  " + "\n  ".join(log))
    return {"exit": result.returncode, "log": "\n".join(log), **show}


def test_broker_gate_refuses_a_demoted_master(installed: Install, failover: Failover) -> None:
    """The README's broker-host step on a stand-in broker unit (ExecStart=/bin/sleep infinity)
    in this container, fed the daemon's own files: the old master's properties from before the
    failover with the epoch record the failover left beside them is refused; the same broker
    rewritten to a slave, the new master, and a broker without a record start."""
    container = installed.container
    for block in installed.broker_host_blocks:
        run_block(container, block)
    container.write(
        BROKER_UNIT,
        "[Unit]\nDescription=stand-in for the RocketMQ broker %i (install test)\n\n"
        "[Service]\nExecStart=/bin/sleep infinity\n",
    )
    sandbox = installed.sandbox_dir
    old_epoch = (sandbox / "broker-a.properties.epoch").read_text()
    cases = {
        "old-master": (installed.properties_before[MASTER], old_epoch),
        "demoted": ((sandbox / "broker-a.properties").read_text(), old_epoch),
        "new-master": (
            (sandbox / "broker-a-s.properties").read_text(),
            (sandbox / "broker-a-s.properties.epoch").read_text(),
        ),
        "no-record": (installed.properties_before[MASTER], None),
    }
    for name, (properties, epoch) in cases.items():
        container.write(f"{BROKER_CONF}/{name}.properties", properties)
        if epoch is not None:
            container.write(f"{BROKER_CONF}/{name}.properties.epoch", epoch)
    container.run(["systemctl", "daemon-reload"])
    try:
        refused = _start_broker(installed, "old-master")
        assert refused["exit"] != 0
        assert refused["ActiveState"] == "failed" and refused["Result"] == "exit-code"
        assert refused["ExecMainStartTimestampMonotonic"] == "0", "the broker itself ran"
        assert (
            f"refusing to start broker-a at {installed.addrs[MASTER]} as master" in refused["log"]
        )
        assert f"the master is {installed.addrs[SLAVE]}" in refused["log"]

        expected = {
            "demoted": "starts as a slave (epoch 1",
            "new-master": "may start as master (epoch 1)",
            "no-record": "no epoch record",
        }
        for name, line in expected.items():
            allowed = _start_broker(installed, name)
            assert allowed["exit"] == 0 and allowed["ActiveState"] == "active", allowed
            assert line in allowed["log"], allowed["log"]
    finally:
        container.run(["systemctl", "stop", "rocketmq-broker@*.service"], check=False)
        container.run(["systemctl", "reset-failed"], check=False)


def test_hung_daemon_is_restarted_by_the_systemd_watchdog(installed: Install) -> None:
    """A running daemon keeps the watchdog fed; SIGSTOP it, and after WatchdogSec systemd kills
    it (SIGABRT) and Restart=on-failure starts a new one. The shipped 30 s is shortened to 5 s
    by a test drop-in."""
    container = installed.container
    try:
        dropin = f"[Service]\nWatchdogSec={TEST_WATCHDOG_SEC}s\n"
        _restart_with_dropin(installed, WATCHDOG_DROPIN, dropin)
        before = container.show(UNIT, "MainPID", "NRestarts", "WatchdogUSec")
        assert before["WatchdogUSec"] == f"{TEST_WATCHDOG_SEC}s", before
        pid = before["MainPID"]
        # Running normally, the daemon keeps the watchdog fed: 1.5 x WatchdogSec, no restart.
        time.sleep(TEST_WATCHDOG_SEC * 1.5)
        fed = container.show(UNIT, "MainPID", "NRestarts", "WatchdogUSec")
        assert fed == before, f"restarted while running normally: {fed}, was {before}"
        cursor = container.cursor()
        stopped_at, stopped_wall = time.monotonic(), time.time()
        container.run(["kill", "-STOP", pid])

        def restarted(entries: list[Entry]) -> bool:
            timeout = [i for i, e in enumerate(entries) if "Watchdog timeout" in e["MESSAGE"]]
            return bool(timeout) and bool(_pid1(entries[timeout[0] :], STARTED_ID))

        entries = container.wait_journal(
            "a watchdog timeout and a new start",
            restarted,
            UNIT,
            after=cursor,
            timeout_seconds=TEST_WATCHDOG_SEC + 60,
        )
        back_at = time.monotonic()
        messages = [e["MESSAGE"] for e in entries if e.get("_PID") == "1"]
        print("\n".join(messages))
        timeout = next(e for e in entries if "Watchdog timeout" in e["MESSAGE"])
        detected = _realtime(timeout) - stopped_wall  # one kernel, one clock
        print(
            f"SIGSTOP -> watchdog timeout {detected:.1f} s -> active again "
            f"{back_at - stopped_at:.1f} s"
        )
        assert detected >= TEST_WATCHDOG_SEC - 1.5, "killed before WatchdogSec had passed"
        assert any(
            f"Killing process {pid} (rmq-watchdog) with signal SIGABRT" in m for m in messages
        ), messages
        after = container.show(UNIT, "MainPID", "NRestarts", "ActiveState")
        assert after["ActiveState"] == "active" and after["MainPID"] != pid, after
        assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1, after
    finally:
        _restart_with_dropin(installed, WATCHDOG_DROPIN, None)
    assert container.show(UNIT, "WatchdogUSec")["WatchdogUSec"] == "30s"


def test_stop_is_clean(installed: Install) -> None:
    """`systemctl stop`: SIGTERM, the daemon says it stops and exits 0, well before
    TimeoutStopSec; nothing of it is left (process, control socket)."""
    container = installed.container
    installed.ensure_running()
    cursor = container.cursor()
    started = time.monotonic()
    container.run(["systemctl", "stop", UNIT])
    seconds = time.monotonic() - started
    show = container.show(UNIT, "ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
    entries = container.journal(UNIT, after=cursor)
    messages = [e["MESSAGE"] for e in entries]
    print(f"systemctl stop took {seconds:.2f} s; {show}\n" + "\n".join(m[:200] for m in messages))
    # ExecMainCode 1 is CLD_EXITED: the daemon exited by itself, with status 0.
    assert show == {
        "ActiveState": "inactive",
        "Result": "success",
        "ExecMainCode": "1",
        "ExecMainStatus": "0",
    }, show
    assert seconds < 15
    assert any(e.get("event") == "rmq-watchdog stopped" for e in daemon_events(entries))
    assert not any("SIGKILL" in m or "timed out" in m.lower() for m in messages), messages
    left = container.run(["pgrep", "-u", "rmq-watchdog"], check=False)
    assert left.returncode == 1, f"processes of rmq-watchdog left: {left.stdout}"
    sock = container.run(["test", "-e", "/var/lib/rmq-watchdog/control.sock"], check=False)
    assert sock.returncode == 1, "the control socket was left behind"
