"""Turn a snapshot into the `status` report: a JSON-ready dict and a human table."""

from __future__ import annotations

from typing import Any

from ..model import ClusterSnapshot, format_seconds, format_utc

__all__ = ["status_problems", "status_report", "render_status"]


def status_problems(snapshot: ClusterSnapshot) -> list[str]:
    """Why `status` exits non-zero: what needs someone now, one sentence each."""
    problems = []
    down = [ns.addr for ns in snapshot.nameservers if not ns.is_up]
    if len(down) * 2 > len(snapshot.nameservers):
        problems.append(
            f"{len(down)} of {len(snapshot.nameservers)} nameservers do not answer: "
            + ", ".join(down)
        )
    refused = [b for b in snapshot.brokers if b.acl_refusal is not None]
    if refused:
        reasons = "; ".join(sorted({str(b.acl_refusal) for b in refused}))
        problems.append(
            f"the brokers refuse the watchdog's ACL credentials: {reasons} "
            f"({', '.join(b.key for b in refused)}); their roles and offsets are unknown and no "
            "failover can run: fix [acl] (`rmq-watchdog check` says how)"
        )
    for name in snapshot.group_names():
        claimants = snapshot.master_claimants(name)
        if not claimants and all(b.acl_refusal for b in snapshot.group(name)):
            continue  # no role is known: the refusal above is the problem
        if not claimants:
            problems.append(f"group {name}: no broker answers as master")
        elif len(claimants) > 1:
            addrs = ", ".join(b.addr for b in claimants)
            problems.append(f"group {name}: split brain, {addrs} all answer as master")
    return problems


def status_report(snapshot: ClusterSnapshot) -> dict[str, Any]:
    nameservers = [
        {
            "addr": ns.addr,
            "up": ns.is_up,
            "latency_ms": _ms(ns.latency_seconds),
            "error": ns.error,
        }
        for ns in snapshot.nameservers
    ]
    brokers = []
    for b in snapshot.brokers:
        master = snapshot.master_of(b.broker_name)
        brokers.append(
            {
                "broker_name": b.broker_name,
                "broker_id": b.broker_id,
                "addr": b.addr,
                "up": b.is_up,
                "role": b.role,
                "is_master": master is not None and master.addr == b.addr,
                "reported_broker_id": b.reported_broker_id,
                "registered_ids": {
                    ns.addr: list(ns.ids_of(b.addr)) for ns in snapshot.nameservers if ns.is_up
                },
                "commitlog_max_offset": b.commitlog_max_offset,
                "lag_bytes": snapshot.replication_lag(b),
                "version": b.version,
                "latency_ms": _ms(b.latency_seconds),
                "error": b.error,
            }
        )
    return {
        "cluster_name": snapshot.cluster_name,
        "probe_duration_ms": _ms(snapshot.duration_seconds),
        "nameservers": nameservers,
        "brokers": brokers,
        "problems": status_problems(snapshot),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "up" if value else "DOWN"
    return str(value)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _when(at: float | None) -> str:
    return "-" if at is None else format_utc(at)


def _age(seconds: float) -> str:
    # A clock a little ahead on another host gives a small negative age: say "now".
    return "now" if seconds < 0.05 else f"{format_seconds(seconds)} ago"


def _etcd_lines(etcd: dict[str, Any] | None) -> list[str]:
    """With [etcd]: one line on etcd and the leader, then each live instance and its view of
    each group; one line only when etcd cannot be reached."""
    if not etcd:
        return []
    where = f"etcd {','.join(etcd.get('endpoints', ()))}"
    if not etcd.get("reachable"):
        return [
            f"{where}: cannot be reached ({etcd.get('error')}); no instance acts while it "
            "cannot (the failsafe), the probe above is this host's own"
        ]
    leader = etcd.get("leader")
    lines = [
        f"{where}: leader {leader['instance']} for {format_seconds(leader['for_seconds'])}"
        if leader
        else f"{where}: nobody leads (no instance acts until one takes the leader key)"
    ]
    instances = etcd.get("instances", [])
    names = sorted({g for i in instances for g in i.get("groups", {})})
    rows = []
    for i in instances:
        marks = [m for m, on in (("leader", i.get("is_leader")), ("this", i.get("is_this"))) if on]
        name = i["name"] + (f" ({', '.join(marks)})" if marks else "")
        cells = []
        for group in names:
            g = i.get("groups", {}).get(group)
            cells.append("-" if g is None else f"{g['view']} {g.get('master') or '-'}")
        rows.append([name, _age(float(i.get("published_age_seconds", 0.0))), *cells])
    if rows:
        table = _table(["INSTANCE", "PUBLISHED", *names], rows)
        lines += [f"  {line}" for line in table.splitlines()]
    this = etcd.get("this_instance")
    if this and not any(i.get("is_this") for i in instances):
        lines.append(
            f"  this instance ({this}) publishes nothing: its daemon does not run or does not "
            "reach etcd"
        )
    if etcd.get("unreadable_keys"):
        lines.append(f"  unreadable keys: {', '.join(etcd['unreadable_keys'])}")
    return lines


def _watchdog_lines(view: dict[str, Any] | None) -> list[str]:
    """The watchdog part of the table: etcd and the instances (with [etcd]), then one block
    per group."""
    if not view:
        return []
    daemon = view.get("daemon")
    lines = [
        "",
        f"watchdog daemon: pid {daemon['pid']}, cycle {daemon['cycle']}"
        if daemon
        else f"watchdog daemon: none answers on {view.get('control_socket')}",
        *_etcd_lines(view.get("etcd")),
    ]
    if view.get("state_source") == "etcd":
        lines.append("  the records below are the leader's, as it committed them to etcd")
    for name, g in view.get("groups", {}).items():
        state = g.get("state") or "-"
        lines.append(f"group {name}: {state}" + (f": {g['reason']}" if g.get("reason") else ""))
        failover = g.get("failover")
        if failover:
            doing = "rolling back" if failover.get("rolling_back") else "running"
            lines.append(
                f"  failover {failover['id']} {doing}: step {failover.get('step')}/"
                f"{failover.get('steps')} {failover.get('purpose') or ''}".rstrip()
            )
        if g.get("blocked_until") is not None:
            lines.append(
                f"  automatic failovers blocked until {_when(g['blocked_until'])} "
                f"({g.get('block_reason')}); `rmq-watchdog ack` lifts it"
            )
        lines.append(
            f"  epoch {g.get('epoch')}, master on record {g.get('master') or '-'}"
            + (
                f" (role lowered from {g['role_lowered_from']})"
                if g.get("role_lowered_from")
                else ""
            )
        )
        last = g.get("last_failover")
        if last:
            lines.append(
                f"  last {last['kind']} {last['id']}: {last['outcome']}, "
                f"started {_when(last.get('started_at'))}"
            )
        for aside in g.get("stores_moved_aside", ()):
            lines.append(
                f"  store moved aside by {aside['failover_id']}: {aside['messages']} message(s)"
            )
    return lines


def _problem_lines(problems: list[str]) -> list[str]:
    return ["", *(f"PROBLEM: {p}" for p in problems)] if problems else []


def render_status(report: dict[str, Any]) -> str:
    ns_rows = [
        [n["addr"], _cell(n["up"]), _cell(n["latency_ms"]), n["error"] or ""]
        for n in report["nameservers"]
    ]
    broker_rows = []
    for b in report["brokers"]:
        registered = ",".join(
            f"{'/'.join(str(i) for i in ids) or 'absent'}" for ids in b["registered_ids"].values()
        )
        broker_rows.append(
            [
                f"{b['broker_name']}:{b['broker_id']}",
                b["addr"],
                _cell(b["up"]),
                _cell(b["role"]),
                registered or "-",
                _cell(b["commitlog_max_offset"]),
                _cell(b["lag_bytes"]),
                _cell(b["version"]),
                _cell(b["latency_ms"]),
                b["error"] or "",
            ]
        )
    return "\n".join(
        [
            f"cluster {report['cluster_name']}  (probe took {report['probe_duration_ms']} ms)",
            "",
            _table(["NAMESERVER", "STATE", "LATENCY_MS", "ERROR"], ns_rows),
            "",
            _table(
                [
                    "BROKER",
                    "ADDR",
                    "STATE",
                    "ROLE",
                    "IDS_ON_NS",
                    "COMMITLOG_MAX",
                    "LAG_BYTES",
                    "VERSION",
                    "LATENCY_MS",
                    "ERROR",
                ],
                broker_rows,
            ),
            *_watchdog_lines(report.get("watchdog")),
            *_problem_lines(report.get("problems", ())),
        ]
    )
