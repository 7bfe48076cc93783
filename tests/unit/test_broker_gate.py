"""rmq-broker-gate: a broker the epoch record demoted never starts as master, under sh and dash."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

GATE = Path(__file__).resolve().parents[2] / "deploy" / "broker-gate" / "rmq-broker-gate"

# /bin/sh is whatever the machine has (dash on Debian); dash is run explicitly when installed,
# and bash in POSIX mode as a third, different parser of the same script.
SHELLS = [
    s
    for s in (["sh"], ["dash"], ["bash", "--posix"])
    if shutil.which(s[0]) is not None
]
assert ["sh"] in SHELLS, "no sh on PATH"

DEMOTED = (
    "epoch=7\n"
    "broker_name=broker-a\n"
    "master_addr=10.0.0.12:10911\n"
    "this_addr=10.0.0.11:10911\n"
    "may_be_master=false\n"
    "recorded_at=1732521600\n"
)
ALLOWED = DEMOTED.replace("may_be_master=false", "may_be_master=true")

MASTER = "brokerClusterName=C\nbrokerName=broker-a\nbrokerId=0\nbrokerRole=ASYNC_MASTER\n"
SLAVE = "brokerClusterName=C\nbrokerName=broker-a\nbrokerId=1\nbrokerRole=SLAVE\n"
# A backslash at the end continues the value: the next line defines no key...
CONTINUED = SLAVE + "x=a,\\\n  brokerRole=ASYNC_MASTER\n"
# ...but an escaped backslash (two) does not continue it.
NOT_CONTINUED = SLAVE + "x=a\\\\\nbrokerRole=ASYNC_MASTER\n"


@dataclass(frozen=True)
class Case:
    name: str
    properties: str
    epoch: str | None  # None: no .epoch file
    exit_code: int
    says: str  # a fragment the one output line must contain


CASES = [
    # No record: the watchdog never acted on this broker.
    Case("no record, master", MASTER, None, 0, "no epoch record"),
    Case("no record, slave", SLAVE, None, 0, "no epoch record"),
    # The core rule.
    Case("demoted master refused", MASTER, DEMOTED, 1,
         "epoch 7 says the master is 10.0.0.12:10911"),
    Case("demoted, now slave", SLAVE, DEMOTED, 0, "starts as a slave"),
    Case("allowed master", MASTER, ALLOWED, 0, "may start as master (epoch 7)"),
    Case("allowed, slave", SLAVE, ALLOWED, 0, "starts as a slave"),
    Case("SYNC_MASTER refused", MASTER.replace("ASYNC_", "SYNC_"), DEMOTED, 1, "SYNC_MASTER"),
    # RocketMQ defaults: no brokerRole = ASYNC_MASTER, no brokerId = 0.
    Case("role and id absent", "brokerName=broker-a\n", DEMOTED, 1, "brokerRole=ASYNC_MASTER"),
    Case("role absent, id 1", "brokerName=broker-a\nbrokerId=1\n", DEMOTED, 1, "refusing"),
    Case("slave role but id 0", SLAVE.replace("brokerId=1", "brokerId=0"), DEMOTED, 1,
         "brokerId=0"),
    Case("slave role, id 00", SLAVE.replace("brokerId=1", "brokerId=00"), DEMOTED, 1, "refusing"),
    Case("slave role, id 10", SLAVE.replace("brokerId=1", "brokerId=10"), DEMOTED, 0, "slave"),
    # Properties syntax: last definition wins, separators and blanks, CRLF, comments.
    Case("last definition wins (master)", SLAVE + "brokerRole=ASYNC_MASTER\nbrokerId=0\n",
         DEMOTED, 1, "refusing"),
    Case("last definition wins (slave)", MASTER + "brokerRole = SLAVE\nbrokerId = 2\n",
         DEMOTED, 0, "slave"),
    Case("colon separator", "brokerName: broker-a\nbrokerId : 1\nbrokerRole :SLAVE\n",
         DEMOTED, 0, "slave"),
    Case("blank separator", "brokerName broker-a\nbrokerId\t1\nbrokerRole   SLAVE\n",
         DEMOTED, 0, "slave"),
    Case("CRLF properties, master", MASTER.replace("\n", "\r\n"), DEMOTED, 1, "ASYNC_MASTER,"),
    Case("CRLF properties, slave", SLAVE.replace("\n", "\r\n"), DEMOTED, 0, "slave"),
    Case("trailing blanks", "brokerName=broker-a \nbrokerId=1\t\nbrokerRole=SLAVE  \n",
         DEMOTED, 0, "slave"),
    Case("lowercase role", SLAVE.replace("SLAVE", "slave"), DEMOTED, 0, "slave"),
    Case("commented-out slave role", MASTER + "#brokerRole=SLAVE\n! brokerId=1\n",
         DEMOTED, 1, "refusing"),
    Case("no final newline", SLAVE + "brokerRole=ASYNC_MASTER", DEMOTED, 1, "refusing"),
    Case("continuation line is a value", CONTINUED, DEMOTED, 0, "slave"),
    Case("escaped backslash ends the line", NOT_CONTINUED, DEMOTED, 1, "refusing"),
    Case("key prefix is not the key", SLAVE + "brokerRoleX=ASYNC_MASTER\nbrokerIdle=0\n",
         DEMOTED, 0, "slave"),
    # Record syntax that is tolerated.
    Case("CRLF record", MASTER, DEMOTED.replace("\n", "\r\n"), 1, "epoch 7 says"),
    Case("spaces and comments in record", MASTER,
         "# written by rmq-watchdog\n\n" + DEMOTED.replace("epoch=7", " epoch = 7 "), 1, "epoch 7"),
    Case("unknown key in record ignored", MASTER, DEMOTED + "written_by=rmq-watchdog 0.2\n",
         1, "epoch 7"),
    Case("empty master_addr", MASTER,
         DEMOTED.replace("master_addr=10.0.0.12:10911", "master_addr="), 1,
         "the master is unknown"),
    Case("record without final newline", MASTER, DEMOTED.rstrip("\n"), 1, "epoch 7"),
    # Malformed record: fail safe, exit 2, even for a properties file that says SLAVE.
    Case("empty record", SLAVE, "", 2, "epoch is missing"),
    Case("not key=value", SLAVE, DEMOTED + "garbage\n", 2, "line 7 is not key=value"),
    Case("epoch not a number", SLAVE, DEMOTED.replace("epoch=7", "epoch=seven"), 2,
         "epoch 'seven'"),
    Case("negative epoch", SLAVE, DEMOTED.replace("epoch=7", "epoch=-1"), 2, "epoch '-1'"),
    Case("missing may_be_master", SLAVE, DEMOTED.replace("may_be_master=false\n", ""), 2,
         "may_be_master is missing"),
    Case("may_be_master yes", MASTER, DEMOTED.replace("=false", "=yes"), 2, "'yes' is not true"),
    Case("duplicate key", MASTER, DEMOTED + "may_be_master=true\n", 2, "given twice"),
    Case("bad this_addr", SLAVE, DEMOTED.replace("this_addr=10.0.0.11:10911", "this_addr=host"),
         2, "this_addr 'host'"),
    Case("port out of range", SLAVE, DEMOTED.replace(":10911\nthis", ":70000\nthis"), 2,
         "master_addr"),
    Case("empty broker_name", SLAVE, DEMOTED.replace("broker_name=broker-a", "broker_name="), 2,
         "broker_name is empty"),
    Case("recorded_at not seconds", SLAVE,
         DEMOTED.replace("recorded_at=1732521600", "recorded_at=yesterday"), 2, "recorded_at"),
    Case("binary garbage", MASTER, "\x00\x01\x02\xff\n", 2, "malformed"),
    Case("shell metacharacters are data", MASTER,
         DEMOTED.replace("broker_name=broker-a", "broker_name=$(touch pwned)`id`;x"), 2,
         "brokerName=broker-a"),
    # Properties the gate cannot judge.
    Case("record for another group", MASTER.replace("broker-a", "broker-b"), ALLOWED, 2,
         "is for broker group broker-a but"),
    Case("unknown role", MASTER.replace("ASYNC_MASTER", "LEADER"), ALLOWED, 2,
         "brokerRole 'LEADER'"),
    Case("brokerId not a number", SLAVE.replace("brokerId=1", "brokerId=one"), DEMOTED, 2,
         "brokerId 'one'"),
]


def _run(shell: list[str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*shell, str(GATE), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        errors="replace",
    )


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_gate_decision(case: Case, shell: list[str], tmp_path: Path) -> None:
    props = tmp_path / "broker-a.properties"
    props.write_bytes(case.properties.encode("latin-1"))
    if case.epoch is not None:
        (tmp_path / "broker-a.properties.epoch").write_bytes(case.epoch.encode("latin-1"))

    proc = _run(shell, str(props), cwd=tmp_path)

    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == case.exit_code, out
    assert len(out.splitlines()) == 1, f"expected one clear line, got: {out!r}"
    assert out.startswith("rmq-broker-gate: ")
    assert case.says in out, out
    # Refusals go to stderr, permissions to stdout, so the journal marks them apart.
    assert (proc.stderr != "") == (case.exit_code != 0)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_refusal_names_epoch_and_master(shell: list[str], tmp_path: Path) -> None:
    props = tmp_path / "broker-a.properties"
    props.write_text(MASTER)
    (tmp_path / "broker-a.properties.epoch").write_text(
        DEMOTED.replace("epoch=7", "epoch=12").replace("10.0.0.12:10911", "10.9.9.9:10911")
    )
    proc = _run(shell, str(props), cwd=tmp_path)
    assert proc.returncode == 1
    assert "epoch 12 says the master is 10.9.9.9:10911" in proc.stderr


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
@pytest.mark.parametrize(
    "args",
    [[], ["a", "b"], [""]],
    ids=["no args", "two args", "empty arg"],
)
def test_bad_usage_refuses(shell: list[str], args: list[str], tmp_path: Path) -> None:
    proc = _run(shell, *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert "usage: rmq-broker-gate /path/to/broker.properties" in proc.stderr


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_record_but_no_properties_refuses(shell: list[str], tmp_path: Path) -> None:
    (tmp_path / "broker-a.properties.epoch").write_text(ALLOWED)
    proc = _run(shell, str(tmp_path / "broker-a.properties"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "cannot read broker properties" in proc.stderr


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_record_that_is_a_directory_refuses(shell: list[str], tmp_path: Path) -> None:
    (tmp_path / "broker-a.properties").write_text(SLAVE)
    (tmp_path / "broker-a.properties.epoch").mkdir()
    proc = _run(shell, str(tmp_path / "broker-a.properties"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "is not a readable file" in proc.stderr


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_dangling_symlink_record_refuses(shell: list[str], tmp_path: Path) -> None:
    """A record that points nowhere is damaged, not absent: refuse rather than allow."""
    (tmp_path / "broker-a.properties").write_text(MASTER)
    (tmp_path / "broker-a.properties.epoch").symlink_to(tmp_path / "gone")
    proc = _run(shell, str(tmp_path / "broker-a.properties"), cwd=tmp_path)
    assert proc.returncode == 2


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_path_with_spaces_and_metacharacters(shell: list[str], tmp_path: Path) -> None:
    d = tmp_path / "conf dir; $(touch pwned)"
    d.mkdir()
    props = d / "broker a.properties"
    props.write_text(MASTER)
    Path(f"{props}.epoch").write_text(DEMOTED)
    proc = _run(shell, str(props), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert not (tmp_path / "pwned").exists()


def test_script_has_no_bashisms_dash_can_parse() -> None:
    """dash -n parses without running: a bash-only construct is a syntax error for it."""
    dash = shutil.which("dash") or shutil.which("sh")
    assert dash
    proc = subprocess.run([dash, "-n", str(GATE)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert GATE.read_text().startswith("#!/bin/sh\n")
