"""The shipped systemd units: systemd itself accepts them, and the daemon's unit is hardened."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "rmq-watchdog.service"
GATE_DROPIN = REPO / "deploy" / "systemd" / "rmq-broker-gate.conf"
GATE_SCRIPT = REPO / "deploy" / "broker-gate" / "rmq-broker-gate"

INSTALLED_DAEMON = "/usr/local/bin/rmq-watchdog"
INSTALLED_GATE = "/usr/local/bin/rmq-broker-gate"

# Reached with SSH and local commands still working; see test_security_exposure.
MAX_EXPOSURE = 2.0


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    # Never skip: `make system-deps` installs it, and a missing tool must fail CI loudly.
    assert path, "systemd-analyze is not installed (Debian package: systemd)"
    return path


def _venv_daemon() -> Path:
    exe = Path(sys.executable).parent / "rmq-watchdog"
    assert exe.is_file() and os.access(exe, os.X_OK), f"{exe} missing: pip install -e . first"
    return exe


def _unit_directives(text: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        directives.setdefault(key.strip(), []).append(value.strip())
    return directives


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit with no warning at all.

    verify refuses a unit whose ExecStart binary does not exist, and /usr/local/bin/rmq-watchdog
    exists only once installed. The test verifies a temporary copy that differs from the shipped
    file in that one path, which points at this checkout's own console script (a real executable
    with the same argv). `--root` was the alternative, but it needs a whole unit tree
    (sysinit.target, ...) inside the root; rewriting one path keeps every other byte checked.
    """
    text = UNIT.read_text()
    assert text.count(f"ExecStart={INSTALLED_DAEMON} ") == 1
    copy = tmp_path / "rmq-watchdog.service"
    copy.write_text(text.replace(f"={INSTALLED_DAEMON} ", f"={_venv_daemon()} "))
    assert copy.read_text().replace(str(_venv_daemon()), INSTALLED_DAEMON) == text

    proc = subprocess.run(
        [_systemd_analyze(), "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Unknown keys and bad values are only warnings (exit 0), so any output is a failure too.
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stdout + proc.stderr


def test_exec_start_is_a_real_cli_invocation() -> None:
    """The daemon's CLI accepts ExecStart's subcommand and option (not just any path)."""
    (exec_start,) = _unit_directives(UNIT.read_text())["ExecStart"]
    _, subcommand, option, _config = exec_start.split()
    proc = subprocess.run(
        [str(_venv_daemon()), subcommand, "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{option}, --config FILE" in proc.stdout


def test_exec_reload_validates_with_a_real_cli_invocation(tmp_path: Path) -> None:
    """ExecReload='s first command accepts its options, passes a good config, fails a bad one."""
    check = _unit_directives(UNIT.read_text())["ExecReload"][0].split()
    assert check[:3] == [INSTALLED_DAEMON, "check", "--config-only"]
    good = Path(__file__).parents[2] / "config" / "watchdog.example.toml"
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text() + "\n[probe]\ninterval = 5\n")
    ok = subprocess.run(
        [str(_venv_daemon()), *check[1:-1], str(good)], capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0 and "a valid configuration" in ok.stdout, ok.stderr
    refused = subprocess.run(
        [str(_venv_daemon()), *check[1:-1], str(bad)], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and str(bad) in refused.stderr, refused


def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    """The check above is meaningful: a misspelt directive produces output verify reports."""
    copy = tmp_path / "rmq-watchdog.service"
    text = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    copy.write_text(text.replace(f"ExecStart={INSTALLED_DAEMON} ", f"ExecStart={_venv_daemon()} "))
    proc = subprocess.run(
        [_systemd_analyze(), "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "ProtectSytem" in proc.stderr


def test_security_exposure() -> None:
    """`systemd-analyze security --offline` rates the unit at most MAX_EXPOSURE (0 = locked down).

    What remains open is what the daemon needs: Internet sockets and the host network (probes,
    SSH), AF_UNIX (journald, sd_notify, D-Bus for systemctl), /proc/stat for process metrics,
    and no IP allow list (broker addresses are site-specific).
    """
    proc = subprocess.run(
        [_systemd_analyze(), "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout[-2000:]
    exposure = float(match.group(1))
    print(f"systemd-analyze security exposure of {UNIT.name}: {exposure}")
    assert exposure <= MAX_EXPOSURE, proc.stdout


def test_unit_essentials() -> None:
    d = _unit_directives(UNIT.read_text())
    assert d["Type"] == ["notify"]
    assert d["NotifyAccess"] == ["main"]
    assert d["ExecStart"] == [f"{INSTALLED_DAEMON} run -c /etc/rmq-watchdog/watchdog.toml"]
    assert d["ExecReload"] == [
        f"{INSTALLED_DAEMON} check --config-only -c /etc/rmq-watchdog/watchdog.toml",
        "/bin/kill -HUP $MAINPID",
    ]
    assert d["Restart"] == ["on-failure"]
    assert d["User"] == ["rmq-watchdog"] and d["Group"] == ["rmq-watchdog"]
    assert "DynamicUser" not in d  # SSH keys in /etc/rmq-watchdog need a stable uid
    assert d["StateDirectory"] == ["rmq-watchdog"]
    assert d["ConfigurationDirectory"] == ["rmq-watchdog"]
    # The daemon pings once per 1 s cycle; the timeout must leave room for slow cycles.
    (watchdog_sec,) = d["WatchdogSec"]
    assert watchdog_sec.endswith("s") and 10 <= int(watchdog_sec[:-1]) <= 120
    assert d["CapabilityBoundingSet"] == [""]
    assert d["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]


def test_every_relaxation_is_explained() -> None:
    """Each place the unit opens something up carries a comment right above saying why."""
    lines = UNIT.read_text().splitlines()
    for key in ("ReadWritePaths=", "ProcSubset=all"):
        (index,) = [i for i, line in enumerate(lines) if line.startswith(key)]
        assert "Relaxation" in "\n".join(lines[max(0, index - 3) : index]), key


def test_gate_dropin_passes_verify_on_a_broker_template(tmp_path: Path) -> None:
    """The drop-in, installed for a stand-in rocketmq-broker@.service, loads cleanly.

    SYSTEMD_UNIT_PATH points systemd-analyze at a temporary unit tree (trailing ':' keeps the
    system directories for targets). As for the daemon's unit, the gate's installed path is
    rewritten to this checkout's script, and a control run with a missing path shows the
    drop-in is really read.
    """
    text = GATE_DROPIN.read_text()
    d = _unit_directives(text)
    assert d["ExecStartPre"] == [f"{INSTALLED_GATE} /opt/rocketmq/conf/%i.properties"]

    def verify(gate_path: str) -> subprocess.CompletedProcess[str]:
        units = tmp_path / gate_path.replace("/", "_")
        dropin_dir = units / "rocketmq-broker@.service.d"
        dropin_dir.mkdir(parents=True)
        (units / "rocketmq-broker@.service").write_text(
            "[Unit]\nDescription=RocketMQ broker %i\n[Service]\nExecStart=/bin/true\n"
        )
        (dropin_dir / "rmq-broker-gate.conf").write_text(text.replace(INSTALLED_GATE, gate_path))
        return subprocess.run(
            [_systemd_analyze(), "verify", "--man=no", "rocketmq-broker@broker-a.service"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"},
        )

    ok = verify(str(GATE_SCRIPT))
    assert ok.returncode == 0 and ok.stderr.strip() == "", ok.stderr
    missing = verify("/nonexistent/rmq-broker-gate")
    assert missing.returncode != 0 and "/nonexistent/rmq-broker-gate" in missing.stderr


def test_gate_script_is_executable() -> None:
    assert os.access(GATE_SCRIPT, os.X_OK), f"{GATE_SCRIPT} must be executable (git mode 100755)"
