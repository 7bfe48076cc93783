"""A deposed master's store moved aside, and what it held past the promotion point."""

from __future__ import annotations

from ..decide import Step
from ..hosts import Host, HostError
from ..model import PropertiesFile
from ._commitlog import CommitLogError, read_commitlog_tail
from ._run import FailoverRun, StepContext, StepFailed

__all__ = ["move_store_aside"]

# The broker plug-in's files, in the store root by default (broker-plugin/README.md): its
# secret, without which it refuses every request, and the last epoch it served, so that the
# fresh store does not re-open old epochs. The fresh store gets copies.
_PLUGIN_FILES = ("watchdog-plugin.secret", "watchdog-plugin.epoch")


async def move_store_aside(ctx: StepContext, run: FailoverRun, step: Step, host: Host) -> str:
    failover_id = run.failover_id
    props = PropertiesFile.parse((await host.read_file(step.path)).decode("latin-1"))
    root = props.get("storePathRootDir")
    if not root:
        raise StepFailed(f"{step.path} sets no storePathRootDir; cannot find the store")
    aside = f"{root.rstrip('/')}.rmq-watchdog-aside-{failover_id}"
    check = await host.run(["test", "-e", aside], timeout_seconds=30)
    if check.is_ok:
        return f"store already moved to {aside}" + await _keep_plugin_files(host, aside, root)
    moved = await host.run(["mv", root, aside], timeout_seconds=120)
    if not moved.is_ok:
        raise StepFailed(f"mv {root} {aside}: {moved.summary()}")
    commitlog = props.get("storePathCommitLog")
    moved_log: str | None = None
    if commitlog and not commitlog.startswith(root.rstrip("/") + "/"):
        moved_log = f"{commitlog.rstrip('/')}.aside-{failover_id}"
        moved_cmd = await host.run(["mv", commitlog, moved_log], timeout_seconds=120)
        if not moved_cmd.is_ok:
            raise StepFailed(f"mv {commitlog}: {moved_cmd.summary()}")
    elif commitlog:
        moved_log = aside + commitlog[len(root.rstrip("/")) :]
    else:
        moved_log = f"{aside}/commitlog"
    kept = await _keep_plugin_files(host, aside, root)
    accounted = await _account_moved_aside(ctx, run, host, step.broker_key, aside, moved_log)
    return f"moved {root} to {aside}" + kept + (f"; {accounted}" if accounted else "")


async def _keep_plugin_files(host: Host, aside: str, root: str) -> str:
    """Copy the plug-in's files from the moved store into the fresh one (mode kept), unless
    there already; best effort: the detail says what was kept or could not be."""
    kept, problems = [], []
    for name in _PLUGIN_FILES:
        source, target = f"{aside}/{name}", f"{root.rstrip('/')}/{name}"
        if not (await host.run(["test", "-f", source], timeout_seconds=30)).is_ok:
            continue
        if (await host.run(["test", "-e", target], timeout_seconds=30)).is_ok:
            continue
        made = await host.run(["mkdir", "-p", root], timeout_seconds=30)
        copied = made if not made.is_ok else await host.run(
            ["cp", "-p", source, target], timeout_seconds=30
        )
        if copied.is_ok:
            kept.append(name)
        else:
            problems.append(f"{name} not kept: {copied.summary()}")
    out = f"; the plug-in's {', '.join(kept)} kept in the fresh store" if kept else ""
    return out + "".join(f"; {p}" for p in problems)


async def _account_moved_aside(
    ctx: StepContext,
    run: FailoverRun,
    host: Host,
    broker_key: str,
    aside: str,
    commitlog_dir: str,
) -> str:
    """What the moved store held past the promotion point, in bytes and messages: the
    acknowledged writes a deposed master took that the group no longer serves."""
    details = dict(run.plan.details)

    def as_int(key: str) -> int | None:
        value = details.get(key, "")
        return int(value) if value.lstrip("-").isdigit() else None

    target, point = as_int("target_offset"), as_int("promotion_offset")
    if point is None:
        return ""
    past = None if target is None else max(target - point, 0)
    messages: int | None = None
    summary = ""
    at_least = ""
    try:
        tail = await read_commitlog_tail(host, commitlog_dir, point, target)
        messages = tail.messages + (1 if tail.straddles else 0)
        summary = tail.summary()
        at_least = "" if tail.is_exact else "at least "
        if past is None or tail.last_end_offset is not None:
            past = max((tail.last_end_offset or point) - point, past or 0)
    except (CommitLogError, HostError) as exc:
        summary = f"messages not counted: {exc}"
    record = {
        "broker_key": broker_key,
        "path": aside,
        "commitlog": commitlog_dir,
        "promotion_offset": point,
        "bytes": past,
        "messages": messages,
        "summary": summary,
    }
    ctx.journal.append(run.failover_id, "store_moved_aside", **record)
    ctx.emit(
        "store_moved_aside",
        {"failover_id": run.failover_id, "broker_name": run.plan.broker_name, **record},
    )
    run.moved_aside = record
    bytes_text = "unknown" if past is None else str(past)
    count = "an unknown number of" if messages is None else f"{at_least}{messages}"
    return (
        f"{count} message(s), {bytes_text} bytes past the promotion point {point} moved "
        f"aside to {aside} ({summary})"
    )
