"""One container for the whole suite: rmq-watchdog installed by the README under a real systemd.

`installed` (module scope) does, timing each phase:
  rootfs      the cached Debian bookworm root filesystem (debootstrap on the first run only)
  sandbox     `rmq-watchdog sandbox up` on the host (started first, it boots while the rest runs),
              and a real OpenSSH sshd on 127.0.0.1 (tests/sshd.py) through which the daemon in
              the container reaches the brokers: the container has its own PID namespace, so the
              daemon cannot control host processes locally, exactly as on a separate machine
  wheelhouse  the README's offline recipe on the host: `pip wheel -w wheelhouse <source tree>`
  boot        systemd-nspawn --boot of the root filesystem, the source tree (a copy of this
              checkout's README.md, pyproject.toml, watchdog/, deploy/, config/, plus the
              wheelhouse and the site's watchdog.toml, SSH key and known_hosts) bound read-only
              at /usr/src/rmq-watchdog
  install     every ```sh block of the README's "Installing under systemd", in order, run with
              `sh -eux` in /usr/src/rmq-watchdog, but: the placeholder /path/to/rmq-watchdog
              becomes the README's own offline form, the local-brokers block is not run (these
              brokers are on an SSH host) and the broker-host block runs in the gate test
`failover` (module scope) kills the master on the host and waits for the daemon's failover.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sshd import start_sshd
from tests.systemd.container import Container, ContainerError, Entry
from tests.systemd.harness import (
    FAILOVER_TIMEOUT_SECONDS,
    MASTER,
    OFFLINE_INSTALL,
    PHASES,
    PLACEHOLDER,
    RMQ_WATCHDOG,
    SANDBOX_UP_TIMEOUT_SECONDS,
    SRC,
    UNIT,
    WHEELHOUSE_BUILD,
    Failover,
    Install,
    build_wheelhouse,
    classify,
    container_config,
    copy_source_tree,
    daemon_events,
    phase_line,
    run_block,
    sandbox_cli,
)
from tests.systemd.readme import install_blocks, section_text
from tests.systemd.rootfs import RootfsError, ensure_rootfs


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if PHASES.lines:
        terminalreporter.section("tests/systemd: time per phase")
        for line in PHASES.lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    work = tmp_path_factory.mktemp("systemd-install")
    section = section_text()
    for phrase in (OFFLINE_INSTALL, WHEELHOUSE_BUILD, PLACEHOLDER):
        if phrase not in section:
            pytest.fail(f"the README's install section no longer says {phrase!r}: adapt the test")
    run_blocks, broker_host_blocks, not_run = classify(install_blocks())

    with contextlib.ExitStack() as cleanup:
        with PHASES.timed("rootfs") as phase:
            try:
                root, made = ensure_rootfs()
            except RootfsError as exc:
                pytest.fail(f"no Debian root filesystem for systemd-nspawn: {exc}")
            phase.note = "debootstrap, cached from now on" if made else "cached"
        print(f"root filesystem: {root}", flush=True)

        # Stopped last: sshd's stop kills what runs under it, and brokers the daemon started
        # over SSH do; the sandbox goes down first.
        sshd = start_sshd(work / "sshd")
        cleanup.callback(sshd.stop)

        # The sandbox boots (JVMs) while the wheelhouse is built and the container boots.
        sandbox_dir = work / "sandbox"
        sandbox_started = time.monotonic()
        up = subprocess.Popen(
            [RMQ_WATCHDOG, "sandbox", "up", "--dir", str(sandbox_dir), "--tls", "disabled"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def sandbox_down() -> None:
            if up.poll() is None:
                up.kill()
                up.wait(timeout=30)
            if (sandbox_dir / "cluster.json").exists():
                with PHASES.timed("sandbox down"):
                    sandbox_cli("down", "--dir", str(sandbox_dir), timeout=180)

        cleanup.callback(sandbox_down)

        source = work / "rmq-watchdog"
        copy_source_tree(source)
        with PHASES.timed("wheelhouse on the host") as phase:
            phase.note = f"pip wheel: {build_wheelhouse(source)} wheels"

        container = Container(
            root=root,
            name=f"rmqwd-{uuid.uuid4().hex[:8]}",
            log_path=work / "nspawn.log",
            binds_ro={source: SRC},
        )
        cleanup.callback(lambda: _poweroff(container, work))
        with PHASES.timed("container boot") as phase:
            try:
                state = container.boot()
            except ContainerError as exc:
                pytest.fail(f"systemd-nspawn cannot boot a systemd container here: {exc}")
            phase.note = f"is-system-running: {state}"
        if state != "running":
            print(container.run(["systemctl", "--failed", "--no-legend"], check=False).stdout)

        try:
            out, _ = up.communicate(timeout=SANDBOX_UP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"sandbox up did not finish in {SANDBOX_UP_TIMEOUT_SECONDS} s")
        if up.returncode != 0:
            pytest.fail(f"sandbox up failed (exit {up.returncode}):\n{out}")
        PHASES.add("sandbox up (overlapped)", time.monotonic() - sandbox_started)
        print(out.rstrip(), flush=True)

        sandbox = tomllib.loads((sandbox_dir / "watchdog.toml").read_text())
        addrs = {f"{b['broker_name']}:{b['broker_id']}": b["addr"] for b in sandbox["brokers"]}
        properties = {
            f"{b['broker_name']}:{b['broker_id']}": Path(b["properties"]).read_text()
            for b in sandbox["brokers"]
        }
        # The site's files, as step 4 names them, in the source tree the README runs in.
        (source / "watchdog.toml").write_text(container_config(sandbox, sshd))
        shutil.copyfile(sshd.client_key, source / "id_ed25519")
        shutil.copyfile(sshd.known_hosts, source / "known_hosts")

        cursor = container.cursor()
        outputs = []
        with PHASES.timed("README install steps"):
            for block in run_blocks:
                started = time.monotonic()
                outputs.append((block, run_block(container, block)))
                print(phase_line(f"  step {block.step}", time.monotonic() - started), flush=True)
        for block, reason in not_run:
            print(f"--- README step {block.step}, not run ({reason}):\n{block.commands}")

        yield Install(
            container=container,
            sandbox_dir=sandbox_dir,
            sshd=sshd,
            properties_before=properties,
            addrs=addrs,
            metrics=sandbox["metrics"]["listen"],
            install_cursor=cursor,
            outputs=outputs,
            broker_host_blocks=broker_host_blocks,
            not_run=not_run,
        )


def _poweroff(container: Container, work: Path) -> None:
    if container.nspawn is None:
        return
    if container.init_pid:
        with contextlib.suppress(ContainerError, subprocess.TimeoutExpired):
            journal = container.run(
                ["journalctl", "--no-pager", "-o", "short-precise"], check=False
            )
            (work / "container-journal.txt").write_text(journal.stdout)
            print(f"the container's journal: {work / 'container-journal.txt'}")
    with PHASES.timed("container poweroff"):
        container.poweroff()
    leftover = [
        line
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if str(container.root) in line
    ]
    assert not leftover, f"mounts of the root filesystem left behind: {leftover}"


@pytest.fixture(scope="module")
def failover(installed: Install) -> Failover:
    container = installed.container
    installed.ensure_running()
    cursor = container.cursor()
    container.wait_journal(
        "a HEALTHY cycle",
        lambda es: any(e.get("state") == "HEALTHY" for e in daemon_events(es)),
        UNIT,
        after=cursor,
    )
    killed_at = time.monotonic()
    print(
        sandbox_cli(
            "kill", "--dir", str(installed.sandbox_dir), "--broker", MASTER, "--signal", "KILL"
        ).rstrip()
    )

    def outcome(entries: list[Entry]) -> bool:
        return any(
            str(e.get("event", "")).startswith(("failover succeeded", "failover failed"))
            for e in daemon_events(entries)
        )

    try:
        entries = container.wait_journal(
            "failover outcome",
            outcome,
            UNIT,
            after=cursor,
            timeout_seconds=FAILOVER_TIMEOUT_SECONDS,
        )
    except ContainerError as exc:
        pytest.fail(str(exc))
    seconds = time.monotonic() - killed_at
    PHASES.add("failover (kill -> outcome)", seconds)
    events = daemon_events(entries)
    started = [e for e in events if e.get("event") == "failover started"]
    assert started, "no 'failover started' line"
    failover_id = started[0]["failover_id"]
    mine = [e for e in events if e.get("failover_id") == failover_id]
    return Failover(cursor, failover_id, mine, seconds)
