"""The rmq-watchdog command line (click): one entry point, subcommands per job."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from .. import __version__
from ..config import ConfigError, WatchdogConfig, load_config
from ..tools.sandbox import sandbox

__all__ = ["BadInput", "cli", "main"]

T = TypeVar("T")


class BadInput(click.ClickException):
    """Bad config or arguments: one clear message, exit code 2, nothing started."""

    exit_code = 2


def load_or_exit(path: str) -> WatchdogConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise BadInput(str(exc)) from None


def run_async(factory: Callable[[], Awaitable[T]], *, interrupted: str | None = None) -> T:
    """Run a command's coroutine; on Ctrl-C say what was left behind (`interrupted`), exit 130."""

    async def runner() -> T:
        return await factory()

    try:
        return asyncio.run(runner())
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        click.echo(f"interrupted: {interrupted}", err=True)
        sys.exit(130)


config_option = click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    metavar="FILE",
    help="The watchdog's TOML config file.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rmq-watchdog")
def cli() -> None:
    """Automatic, explained master failover for Apache RocketMQ 4.x master/slave clusters."""


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(config_path: str, as_json: bool) -> None:
    """Probe every nameserver and broker once and print what they report.

    Shows each nameserver (up, latency) and each broker (up, role, the ids it is
    registered under on each nameserver, commitLogMaxOffset, replication lag in bytes
    = master - slave max offset, version, probe latency), then the watchdog's view of each
    group: the running daemon's state and sentence, a running failover and its step, the
    anti-flap block, the epoch on record, the last failover and stores moved aside. With
    [etcd]: who leads, and every live instance with the age of its last publication and its
    view of each group (or one line saying etcd cannot be reached); the last failover also
    from the journals the leader committed to etcd. Exits 1 when a group has no broker
    answering as master (or two: a split brain) or most nameservers do not answer.
    """
    config = load_or_exit(config_path)

    from ..observe import render_status, status_report
    from ..probe import Prober, client_pool
    from ._status import read_etcd, watchdog_view

    async def probe_once() -> dict[str, object]:
        pool = client_pool(config)
        etcd = asyncio.create_task(read_etcd(config))  # beside the probe, not after it
        try:
            snapshot = await Prober(config, pool).snapshot()
        finally:
            await pool.close_all()
        report = status_report(snapshot)
        report["watchdog"] = await watchdog_view(config, time.time(), await etcd)
        return report

    report = run_async(probe_once)
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=False))
    else:
        click.echo(render_status(report))
    if report["problems"]:
        sys.exit(1)


@cli.command()
@config_option
@click.option(
    "--config-only",
    is_flag=True,
    help="Only load and validate the config file (nothing is probed): exit 2 with one line "
    "naming the file and field when it cannot be used. The unit's ExecReload= runs this "
    "before it signals the daemon, so a bad config fails `systemctl reload`.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object: findings (id, severity, subject, reason, fix, "
    "blocks_failover), can_fail_over and problems.",
)
def check(config_path: str, config_only: bool, as_json: bool) -> None:
    """Check that a failover could run, and the cluster against the operating advice.

    Failover: cluster vs config, control paths, a promotable slave, the fence. Advice, measured
    on the live cluster, each with its reason and fix: consumer groups with more consumers
    than readable queues, ASYNC_MASTER (with its current loss window) and SYNC_FLUSH, fewer
    than two nameservers or brokers missing on some, a slave on its master's machine, broker
    heap and direct memory against the machine's RAM (from the broker's java command line on
    its host), deleteWhen/fileReservedTime differing between master and slave. Exits 1 when a
    failover could not run, 0 otherwise (advice never fails the check).
    """
    config = load_or_exit(config_path)
    if config_only:
        click.echo(f"{config_path}: a valid configuration for cluster {config.cluster_name}")
        return

    from ..act import StateError, StateStore
    from ..hosts import make_host
    from ..probe import Prober, client_pool
    from ._check import (
        Finding,
        advice_findings,
        block_findings,
        can_fail_over,
        findings_json,
        run_checks,
    )

    async def check_once() -> list[Finding]:
        pool = client_pool(config)
        hosts = {name: make_host(name, host) for name, host in config.hosts.items()}
        try:
            snapshot = await Prober(config, pool).snapshot()
            findings, advice = await asyncio.gather(
                run_checks(config, snapshot, hosts), advice_findings(config, snapshot, hosts, pool)
            )
            try:
                state: object = StateStore(config.state_dir).load()
            except StateError as exc:
                findings.append(Finding("warn", "state", str(exc), id="state.unreadable"))
                state = None
            findings.extend(block_findings(config, state, time.time()))
            findings.extend(advice)
        finally:
            await pool.close_all()
            for host in hosts.values():
                await host.close()
        return findings

    findings = run_async(check_once)
    if as_json:
        click.echo(json.dumps(findings_json(findings), indent=2))
        sys.exit(0 if can_fail_over(findings) else 1)
    for finding in findings:
        click.echo(finding.render())
    problems = sum(f.severity == "error" for f in findings)
    if can_fail_over(findings) and problems:
        click.echo(f"a failover could run, but {problems} problem(s) need attention (FAIL lines)")
    elif can_fail_over(findings):
        click.echo("a failover could run")
    else:
        click.echo("a failover could NOT run (see FAIL lines)")
        sys.exit(1)


@cli.command()
@click.argument("addr")
@click.option("--timeout", "timeout", default="1s", show_default=True, help="Answer within this.")
def ping(addr: str, timeout: str) -> None:
    """Ask the broker at ADDR (host:port) for its runtime info.

    Exit 0 when it answered, 1 when it did not. A TCP connect alone does not count.
    Secondary checks use the lighter `rmq-watchdog-ping ADDR`, which starts faster.
    """
    from ..model import parse_duration
    from ..ping import ping as ping_broker
    from ..remoting import parse_addr

    try:
        timeout_seconds = parse_duration(timeout)
    except ValueError as exc:
        raise BadInput(f"--timeout: {exc}") from None
    try:
        parse_addr(addr)
    except ValueError as exc:
        raise BadInput(f"ADDR: {exc}") from None
    alive, detail = run_async(lambda: ping_broker(addr, timeout_seconds=timeout_seconds))
    click.echo(f"{addr} {'alive' if alive else 'down'}: {detail}")
    sys.exit(0 if alive else 1)


@cli.command()
@config_option
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default="auto",
    show_default=True,
    help="auto: JSON unless stdout is a terminal.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def run(config_path: str, log_format: str, log_level: str) -> None:
    """Run the watchdog daemon in the foreground.

    Every probe.interval it takes one snapshot of the cluster, judges each broker group,
    logs one line per group with the decision and its reason, and acts on Promote/Fence
    decisions (unless dry_run = true). SIGHUP reloads the config (a bad one is refused and
    the running one kept); SIGTERM stops cleanly. With NOTIFY_SOCKET set it speaks the
    systemd notify protocol (READY=1, STATUS=, WATCHDOG=1).
    """
    import os

    from ..daemon import Daemon, LockHeld
    from ..observe import configure_logging

    config = load_or_exit(config_path)
    configure_logging(log_format, log_level)  # type: ignore[arg-type]
    crash_after = os.environ.get("RMQ_WATCHDOG_CRASH_AFTER_STEP")

    async def main_loop() -> int:
        daemon = Daemon(
            config_path, config, crash_after_step=int(crash_after) if crash_after else None
        )
        return await daemon.run()

    try:
        sys.exit(run_async(main_loop))
    except LockHeld as exc:
        raise click.ClickException(f"{exc}: is another daemon running?") from None


@cli.command()
@config_option
@click.option("--broker-name", required=True, help="The broker group (brokerName) to fail over.")
@click.option("--dry-run", is_flag=True, help="Print the plan and diffs; change nothing.")
@click.option(
    "--to", "to_id", type=int, default=None, help="Promote this broker id (as configured)."
)
@click.option(
    "--force",
    is_flag=True,
    help="Fail over a live master (it waits up to 30 s for the candidate to catch up, asks "
    "first, and rejoins the old master as a slave); ignore max_lag_bytes and the block.",
)
@click.option(
    "--fenced-by-operator",
    is_flag=True,
    help="Confirm that the old master can no longer take writes (you powered it off or cut it "
    "off from every client): the fence then counts as done. Recorded in the journal.",
)
@click.option(
    "--allow-loss",
    is_flag=True,
    help="With --force on a master that answers: promote even if the candidate has not caught "
    "up within 30 s (what it lacks is lost).",
)
@click.option(
    "--yes", "assume_yes", is_flag=True, help="Do not ask before stopping a master that answers."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def failover(
    config_path: str,
    broker_name: str,
    dry_run: bool,
    to_id: int | None,
    force: bool,
    fenced_by_operator: bool,
    allow_loss: bool,
    assume_yes: bool,
    as_json: bool,
) -> None:
    """Fail over a broker group now, or show exactly how it would be done (--dry-run).

    The dry run runs the same probe -> decide -> plan code as the daemon and prints the
    reasons, the candidate, the expected loss, every command with its host and the unified
    diff of every properties file. It also works on a healthy cluster ("what would happen if
    the master died now"). A real run asks a running daemon to act (one actor); without a
    daemon it takes the state-dir lock and acts itself. With [etcd] the leader acts: this
    host's daemon when it leads, else the leader on its host, asked through etcd.
    """
    from ._failover import run_failover

    config = load_or_exit(config_path)
    to_key = _candidate_key(config, config_path, broker_name, to_id)
    code = run_async(
        lambda: run_failover(
            config,
            broker_name,
            dry_run=dry_run,
            to_key=to_key,
            force=force,
            as_json=as_json,
            echo=click.echo,
            fenced_by_operator=fenced_by_operator,
            allow_loss=allow_loss,
            assume_yes=assume_yes,
            confirm=_ask if sys.stdin.isatty() else None,
        ),
        interrupted=None
        if dry_run
        else (
            "if a running daemon took the request, it finishes the failover by itself (follow "
            f"it with `rmq-watchdog status -c {config_path}`); if this command was running it "
            "(no daemon), it stopped at its current step, and the journal in "
            f"{config.state_dir}/failovers keeps the place: the next `rmq-watchdog run -c "
            f"{config_path}` resumes it or rolls it back"
        ),
    )
    sys.exit(code)


def _seconds(ctx: click.Context, param: click.Parameter, value: str) -> float:
    """A duration option ("30s", "2m", "800ms"; a bare number is seconds) in seconds."""
    from ..model import parse_duration

    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter(f"{value!r} is not a positive duration")
    return seconds


@cli.command()
@config_option
@click.option("--broker-name", required=True, help="The broker group (brokerName) to switch.")
@click.option(
    "--to", "to_id", type=int, default=None, help="Promote this broker id (as configured)."
)
@click.option("--dry-run", is_flag=True, help="Print the plan and diffs; change nothing.")
@click.option(
    "--catch-up-timeout",
    "catch_up_seconds",
    default="30s",
    show_default=True,
    callback=_seconds,
    help="How long to wait for the candidate to hold the master's whole log, before and after "
    "the master stops taking writes; not in time: refused, writes given back.",
)
@click.option("--yes", "assume_yes", is_flag=True, help="Do not ask before switching.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def switchover(
    config_path: str,
    broker_name: str,
    to_id: int | None,
    dry_run: bool,
    catch_up_seconds: float,
    assume_yes: bool,
    as_json: bool,
) -> None:
    """Move a live master's role to a slave for maintenance, losing nothing acknowledged
    (ASYNC_MASTER too), with the shortest write pause.

    The master stops taking writes in its running JVM (brokerRole=SLAVE and
    brokerPermission=4 through UPDATE_BROKER_CONFIG; its properties file put back as it
    was); once the candidate's log end equals the master's, the master is fenced (rewritten
    to SLAVE, stopped), the candidate promoted (in place through its plug-in with [failover]
    promotion = "inplace", else by restart), the old master started again as its slave and
    checked to replicate from it. A candidate that does not catch up within
    --catch-up-timeout: refused, the master's writes given back, nothing else changed. A
    real run asks a running daemon to act (one actor); without one it takes the state-dir
    lock and acts itself. With [etcd] the leader acts: this host's daemon when it leads, else
    the leader on its host, asked through etcd.
    """
    from ._switchover import run_switchover

    config = load_or_exit(config_path)
    to_key = _candidate_key(config, config_path, broker_name, to_id)
    code = run_async(
        lambda: run_switchover(
            config,
            broker_name,
            to_key=to_key,
            dry_run=dry_run,
            as_json=as_json,
            echo=click.echo,
            catch_up_timeout_seconds=catch_up_seconds,
            assume_yes=assume_yes,
            confirm=_ask if sys.stdin.isatty() else None,
        ),
        interrupted=None
        if dry_run
        else (
            "if a running daemon took the request, it finishes the switchover by itself "
            f"(follow it with `rmq-watchdog status -c {config_path}`); if this command was "
            "running it (no daemon), it stopped at its current step, with the master's writes "
            f"possibly stopped: the journal in {config.state_dir}/failovers keeps the place, "
            f"and the next `rmq-watchdog run -c {config_path}` resumes it or gives them back"
        ),
    )
    sys.exit(code)


def _ask(question: str) -> bool:
    return click.confirm(question, default=False)


def _candidate_key(
    config: WatchdogConfig, config_path: str, broker_name: str, to_id: int | None
) -> str | None:
    """--broker-name and --to checked against the config; the chosen candidate's key."""
    if broker_name not in config.group_names():
        raise BadInput(
            f"--broker-name: unknown broker group {broker_name!r}; configured: "
            + ", ".join(config.group_names())
        )
    if to_id is None:
        return None
    if config.broker(broker_name, to_id) is None:
        raise BadInput(f"--to: {broker_name} has no broker with id {to_id} in {config_path}")
    return f"{broker_name}:{to_id}"


@cli.command()
@config_option
@click.option("--broker-name", default=None, help="Only this broker group.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def history(config_path: str, broker_name: str | None, as_json: bool) -> None:
    """List past failovers, planned switchovers, fences and role restores from the journals in
    state_dir/failovers: id, kind (promote: a failover, switchover, fence, restore_role), group,
    outcome, duration, expected/max loss, fence path, messages moved aside, a switchover's write
    pause, steps.

    With [etcd], also the journals the leader committed to etcd (<prefix>/state/), so every
    instance lists the group's failovers whichever instance ran them; one row per failover.
    When etcd cannot be reached, this instance's own journals, and a line on stderr says so.
    """
    from ..observe import render_history
    from ._status import EtcdRead, group_history, read_etcd

    config = load_or_exit(config_path)
    if broker_name is not None and broker_name not in config.group_names():
        raise BadInput(
            f"--broker-name: unknown broker group {broker_name!r}; configured: "
            + ", ".join(config.group_names())
        )
    read = run_async(lambda: read_etcd(config)) if config.etcd is not None else EtcdRead()
    if read.error is not None:
        click.echo(
            f"etcd cannot be reached ({read.error}): only this instance's journals in "
            f"{config.state_dir}/failovers",
            err=True,
        )
    rows = group_history(config, read, broker_name)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows], indent=2))
    else:
        click.echo(render_history(rows))


@cli.command()
@config_option
@click.option("--broker-name", required=True, help="The broker group whose block to lift.")
def ack(config_path: str, broker_name: str) -> None:
    """Acknowledge a failover: lift the anti-flap block on automatic failovers of a group
    (with [etcd], the leader's block: asked through etcd when it runs on another host)."""
    from ._failover import run_ack

    config = load_or_exit(config_path)
    if broker_name not in config.group_names():
        raise BadInput(f"--broker-name: unknown broker group {broker_name!r}")
    code = run_async(lambda: run_ack(config, broker_name, echo=click.echo))
    sys.exit(code)


@cli.command()
@config_option
@click.option("--broker-name", required=True, help="The broker group whose master is broken.")
@click.option(
    "--fault",
    type=click.Choice(["kill", "stop", "partition"]),
    default="kill",
    show_default=True,
    help="kill: kill -9 the master; stop: SIGSTOP it (SIGCONT after the promotion); "
    "partition: drop the watchdog's packets to it (nftables on loopback; needs [probe] "
    "source_address), where the right outcome is no failover.",
)
@click.option("--yes", "is_confirmed", is_flag=True, help="Run against a non-sandbox config.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--messages",
    type=click.IntRange(1, 100_000),
    default=50,
    show_default=True,
    help="Acknowledged sends before the fault.",
)
@click.option(
    "--timeout",
    "timeout",
    default="120s",
    show_default=True,
    help="Per phase: fault -> promotion finished; old master started -> group safe. "
    "With --fault partition: how long the cut lasts.",
)
@click.option(
    "--start-daemon",
    is_flag=True,
    help="Run `rmq-watchdog run -c FILE` as a child for the drill's duration.",
)
def drill(
    config_path: str,
    broker_name: str,
    fault: str,
    is_confirmed: bool,
    as_json: bool,
    messages: int,
    timeout: str,
    start_daemon: bool,
) -> None:
    """Break a group's master under real traffic and report what clients saw.

    A producer and a consumer (the real RocketMQ client) run throughout; the fault hits the
    master; the running watchdog daemon (or, with --start-daemon, one started for the drill)
    promotes; the old master is started again. Prints the timeline (fault, objectively down,
    promotion steps, first successful write, consumer caught up), the write outage, messages
    acked/lost/duplicated, and whether the old master came back as a slave with one master
    left. Exit 0 passed, 1 failed, 2 refused.

    A config is a sandbox when every broker runs on a local host with the start/stop commands
    `... -m watchdog sandbox start|stop --dir D --broker KEY` (one D for all) and D/cluster.json
    lists every configured broker and nameserver; anything else needs --yes. Only sandbox
    brokers can be faulted (through `sandbox kill --signal KILL|STOP|CONT`).
    """
    from ..model import parse_duration
    from ..tools.drill import DrillOptions, DrillRefused, run_drill

    config = load_or_exit(config_path)
    try:
        timeout_seconds = parse_duration(timeout)
    except ValueError as exc:
        raise BadInput(f"--timeout: {exc}") from None
    options = DrillOptions(
        broker_name=broker_name,
        fault=fault,
        is_confirmed=is_confirmed,
        messages=messages,
        timeout_seconds=timeout_seconds,
        start_daemon=start_daemon,
    )
    try:
        code = run_async(
            lambda: run_drill(
                config_path,
                config,
                options,
                as_json=as_json,
                echo=click.echo,
                progress=lambda line: click.echo(f"drill: {line}", err=True),
            ),
            interrupted=(
                f"the drill stopped where it was: {broker_name}'s old master may still be "
                "stopped (kill) or paused (STOP): `rmq-watchdog sandbox start --dir DIR --broker "
                "KEY` or `rmq-watchdog sandbox kill --dir DIR --broker KEY --signal CONT` brings "
                f"it back; `rmq-watchdog status -c {config_path}` shows the group"
            ),
        )
    except DrillRefused as exc:
        raise BadInput(str(exc)) from None
    sys.exit(code)


cli.add_command(sandbox)


def main() -> None:
    cli()
