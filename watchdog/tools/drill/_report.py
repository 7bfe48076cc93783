"""The drill's report (pure): its values, message accounting, the write outage, the timeline
from journals and daemon logs, build_report and the text rendering."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...model import format_utc
from ...native import ReceiveRecord, SendRecord, int_field, number_field
from ..daemon_child import logged_at

__all__ = [
    "DrillObservations",
    "DrillReport",
    "GroupJudgement",
    "MessageAccounting",
    "TimelineEvent",
    "account_messages",
    "build_report",
    "consumer_caught_up_at",
    "daemon_log_events",
    "finished_entry",
    "journal_events",
    "promotion_of",
    "render_report",
    "write_outage",
]

_SAMPLE = 20  # sequence numbers listed per category in the report


@dataclass(frozen=True)
class TimelineEvent:
    at: float  # wall-clock time
    source: str  # drill, daemon, journal, producer, consumer
    event: str
    detail: str = ""


@dataclass(frozen=True)
class MessageAccounting:
    """Acknowledged sends against deliveries; every number counts distinct sequence numbers
    unless it says otherwise."""

    sent: int
    acked: int
    failed: int
    acked_before_fault: int
    acked_after_fault: int
    consumed: int  # distinct sequence numbers delivered
    deliveries: int  # all deliveries, repeats included
    lost: int  # acked before the fault, never delivered
    unconsumed_after_fault: int  # acked after the fault, never delivered
    duplicated: int  # delivered more than once
    consumed_unacked: int  # delivered although the send failed (stored, ack lost)
    lost_seqs: tuple[int, ...] = ()
    duplicated_seqs: tuple[int, ...] = ()
    unconsumed_after_fault_seqs: tuple[int, ...] = ()
    # The audit: acked messages the cluster no longer stores (None when no audit ran).
    not_stored: int | None = None
    not_stored_seqs: tuple[int, ...] = ()
    # Acked after the fault, stored, never delivered: stored at a queue offset at or below one
    # the consumer had already passed on the old master. A log lost with an async master frees
    # its queue offsets; the new master hands them to new messages, and the consumer, resuming
    # after its old position, never reads them. 4.x has no offset truncation to prevent it.
    skipped: int = 0
    skipped_seqs: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "acked": self.acked,
            "failed": self.failed,
            "acked_before_fault": self.acked_before_fault,
            "acked_after_fault": self.acked_after_fault,
            "consumed": self.consumed,
            "deliveries": self.deliveries,
            "lost": self.lost,
            "unconsumed_after_fault": self.unconsumed_after_fault,
            "duplicated": self.duplicated,
            "consumed_unacked": self.consumed_unacked,
            "not_stored": self.not_stored,
            "lost_seqs": list(self.lost_seqs),
            "duplicated_seqs": list(self.duplicated_seqs),
            "unconsumed_after_fault_seqs": list(self.unconsumed_after_fault_seqs),
            "not_stored_seqs": list(self.not_stored_seqs),
            "skipped_reused_offset": self.skipped,
            "skipped_reused_offset_seqs": list(self.skipped_seqs),
        }


@dataclass(frozen=True)
class GroupJudgement:
    """Is the group safe after the old master came back?"""

    is_safe: bool
    detail: str
    master_key: str | None = None
    master_addr: str | None = None
    old_master_role: str | None = None
    old_master_id: str | None = None


@dataclass(frozen=True)
class DrillReport:
    run_id: str
    broker_name: str
    fault: str
    fault_at: float
    old_master_key: str
    old_master_addr: str
    is_ok: bool
    problems: tuple[str, ...]
    timeline: tuple[TimelineEvent, ...]
    messages: MessageAccounting
    new_master_key: str | None = None
    new_master_addr: str | None = None
    failover_id: str | None = None
    failover_outcome: str | None = None
    expected_loss_bytes: int | None = None
    max_loss_bytes: int | None = None
    odown_after_seconds: float | None = None
    promoted_after_seconds: float | None = None
    failover_finished_after_seconds: float | None = None
    first_write_after_seconds: float | None = None
    write_outage_seconds: float | None = None
    failed_sends_in_outage: int = 0
    consumer_caught_up_after_seconds: float | None = None
    old_master_safe: bool = False
    old_master_detail: str = ""
    old_master_fenced: bool = False
    old_master_safe_after_seconds: float | None = None  # from its start command
    # Stores moved aside during the drill: what each held past the promotion point and where
    # it went ({"broker_key", "path", "bytes", "messages", "summary"} from the journal).
    moved_aside: tuple[Mapping[str, Any], ...] = ()
    master_key: str | None = None
    master_addr: str | None = None
    files: Mapping[str, str] = field(default_factory=dict)
    blocked_until: float | None = None
    block_reason: str = ""

    def to_json(self) -> dict[str, Any]:
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "run_id": self.run_id,
            "broker_name": self.broker_name,
            "fault": self.fault,
            "fault_at": self.fault_at,
            "ok": self.is_ok,
            "problems": list(self.problems),
            "old_master": {"key": self.old_master_key, "addr": self.old_master_addr},
            "new_master": {"key": self.new_master_key, "addr": self.new_master_addr},
            "failover": {
                "id": self.failover_id,
                "outcome": self.failover_outcome,
                "expected_loss_bytes": self.expected_loss_bytes,
                "max_loss_bytes": self.max_loss_bytes,
            },
            "seconds": {
                "fault_to_odown": r(self.odown_after_seconds),
                "fault_to_promoted": r(self.promoted_after_seconds),
                "fault_to_failover_finished": r(self.failover_finished_after_seconds),
                "fault_to_first_write": r(self.first_write_after_seconds),
                "write_outage": r(self.write_outage_seconds),
                "fault_to_consumer_caught_up": r(self.consumer_caught_up_after_seconds),
            },
            "failed_sends_in_outage": self.failed_sends_in_outage,
            "messages": self.messages.to_json(),
            "old_master_rejoin": {
                "safe": self.old_master_safe,
                "fenced": self.old_master_fenced,
                "seconds_from_start": r(self.old_master_safe_after_seconds),
                "detail": self.old_master_detail,
                "moved_aside": [dict(m) for m in self.moved_aside],
            },
            "one_master": {"key": self.master_key, "addr": self.master_addr},
            "timeline": [
                {
                    "t": round(e.at - self.fault_at, 3),
                    "at": e.at,
                    "source": e.source,
                    "event": e.event,
                    "detail": e.detail,
                }
                for e in self.timeline
            ],
            "files": dict(self.files),
            "blocked_until": self.blocked_until,
            "block_reason": self.block_reason,
        }


# --------------------------------------------------------------------------- analysis


def write_outage(
    sends: Sequence[SendRecord], fault_at: float
) -> tuple[float | None, SendRecord | None, int]:
    """(outage seconds, the first acknowledged send begun after the fault, failed sends between).

    The outage is the time between two consecutive acknowledgements that straddle the fault:
    the first ack of a send begun after the fault, and the last ack before that one.
    """
    ordered = sorted(sends, key=lambda s: (s.started_at, s.seq))
    first = next((s for s in ordered if s.is_ok and s.started_at >= fault_at), None)
    if first is None:
        return None, None, sum(1 for s in ordered if not s.is_ok and s.started_at >= fault_at)
    earlier = [
        s.ended_at for s in ordered if s.is_ok and s is not first and s.ended_at <= first.ended_at
    ]
    previous = max(earlier) if earlier else fault_at
    failed = sum(1 for s in ordered if not s.is_ok and previous <= s.started_at < first.started_at)
    return first.ended_at - previous, first, failed


def account_messages(
    sends: Sequence[SendRecord],
    receives: Sequence[ReceiveRecord],
    fault_at: float,
    stored: Iterable[int] | None = None,
    stored_at: Mapping[int, tuple[int, int]] | None = None,
) -> MessageAccounting:
    """Count acknowledged, lost, duplicated... messages; ``stored`` are the sequence numbers
    the audit found in the cluster after the drill (None: no audit), ``stored_at`` where it
    found them (sequence number -> queue id, queue offset)."""
    by_seq: dict[int, SendRecord] = {}
    for s in sends:
        by_seq[s.seq] = s
    acked = {q for q, s in by_seq.items() if s.is_ok}
    before = {q for q in acked if by_seq[q].started_at < fault_at}
    after = acked - before
    counts: dict[int, int] = {}
    for r in receives:
        counts[r.seq] = counts.get(r.seq, 0) + 1
    consumed = set(counts)
    lost = sorted(before - consumed)
    unconsumed = sorted(after - consumed)
    duplicated = sorted(q for q, n in counts.items() if n > 1)
    unacked = {q for q, s in by_seq.items() if not s.is_ok}
    not_stored: list[int] | None = None
    if stored is not None:
        not_stored = sorted(acked - set(stored))
    passed: dict[int, int] = {}  # queue id -> highest offset delivered of a pre-fault send
    for r in receives:
        if r.seq in before and r.queue_id >= 0:
            passed[r.queue_id] = max(passed.get(r.queue_id, -1), r.queue_offset)
    skipped = [
        q
        for q in unconsumed
        if stored_at is not None
        and q in stored_at
        and stored_at[q][1] <= passed.get(stored_at[q][0], -1)
    ]
    return MessageAccounting(
        sent=len(by_seq),
        acked=len(acked),
        failed=len(unacked),
        acked_before_fault=len(before),
        acked_after_fault=len(after),
        consumed=len(consumed),
        deliveries=sum(counts.values()),
        lost=len(lost),
        unconsumed_after_fault=len(unconsumed),
        duplicated=len(duplicated),
        consumed_unacked=len(consumed & unacked),
        lost_seqs=tuple(lost[: _SAMPLE * 50]),
        duplicated_seqs=tuple(duplicated[:_SAMPLE]),
        unconsumed_after_fault_seqs=tuple(unconsumed[:_SAMPLE]),
        not_stored=None if not_stored is None else len(not_stored),
        not_stored_seqs=tuple((not_stored or [])[: _SAMPLE * 50]),
        skipped=len(skipped),
        skipped_seqs=tuple(skipped[: _SAMPLE * 50]),
    )


def consumer_caught_up_at(
    sends: Sequence[SendRecord],
    receives: Sequence[ReceiveRecord],
    first_write: SendRecord | None,
    fault_at: float,
    skipped: Iterable[int] = (),
) -> float | None:
    """When the consumer had every surviving message acked up to the first write after the
    fault, and that write itself: the latest first delivery among them. None if the first
    write was never delivered. Writes in `skipped` (see MessageAccounting) never will be:
    the first later write the consumer can read stands in for them."""
    if first_write is None:
        return None
    gone = set(skipped)
    if first_write.seq in gone:
        later = sorted(
            (s for s in sends if s.is_ok and s.started_at >= first_write.started_at),
            key=lambda s: s.started_at,
        )
        first_write = next((s for s in later if s.seq not in gone), None)
        if first_write is None:
            return None
    first_delivery: dict[int, float] = {}
    for r in sorted(receives, key=lambda r: r.at):
        first_delivery.setdefault(r.seq, r.at)
    if first_write.seq not in first_delivery:
        return None
    wanted = [
        s.seq
        for s in sends
        if s.is_ok and s.started_at <= first_write.started_at and s.seq in first_delivery
    ]
    return max(first_delivery[q] for q in [*wanted, first_write.seq])


def daemon_log_events(
    log: Sequence[Mapping[str, Any]], broker_name: str, since: float
) -> list[TimelineEvent]:
    """The first MASTER_SDOWN and MASTER_ODOWN cycle lines of the group at or after ``since``."""
    out: list[TimelineEvent] = []
    names = {"MASTER_SDOWN": "subjectively_down", "MASTER_ODOWN": "objectively_down"}
    seen: set[str] = set()
    for event in log:
        state = event.get("state")
        at = logged_at(event)  # 0.0: no timestamp
        if event.get("broker_name") != broker_name or state not in names or not at:
            continue
        if at < since or state in seen:
            continue
        seen.add(str(state))
        out.append(TimelineEvent(at, "daemon", names[str(state)], str(event.get("event", ""))))
    return out


def journal_events(failover_id: str, entries: Sequence[Mapping[str, Any]]) -> list[TimelineEvent]:
    """Timeline events of one failover journal: planned, every step, rollback, finished."""
    out: list[TimelineEvent] = []
    kind = "failover"
    for entry in entries:
        at = number_field(entry, "at")
        name = entry.get("event")
        if at is None or not isinstance(name, str):
            continue
        if name == "planned":
            plan = entry.get("plan")
            plan = plan if isinstance(plan, Mapping) else {}
            kind = "fence" if plan.get("kind") == "fence" else "failover"
            out.append(
                TimelineEvent(
                    at, "journal", f"{kind}_planned", f"{failover_id}: {plan.get('reason', '')}"
                )
            )
        elif name in ("step_done", "step_skipped", "step_failed"):
            index = int_field(entry, "index")
            phase = entry.get("phase", "main")
            label = "rollback step" if phase == "rollback" else "step"
            status = name.removeprefix("step_")
            detail = (
                f"{label} {(index or 0) + 1} {entry.get('kind')} {entry.get('broker_key')} "
                f"{status}: {entry.get('detail', '')}"
            )
            out.append(TimelineEvent(at, "journal", f"{kind}_step_{status}", detail))
            if kind == "failover" and entry.get("kind") == "wait_master" and name == "step_done":
                out.append(TimelineEvent(at, "journal", "promoted", str(entry.get("detail", ""))))
        elif name == "rollback_started":
            out.append(TimelineEvent(at, "journal", f"{kind}_rollback", str(entry.get("reason"))))
        elif name == "finished":
            out.append(
                TimelineEvent(
                    at,
                    "journal",
                    f"{kind}_finished",
                    f"{entry.get('outcome')}: {entry.get('detail', '')}",
                )
            )
    return out


def _plan(entries: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    if (
        entries
        and entries[0].get("event") == "planned"
        and isinstance(entries[0].get("plan"), Mapping)
    ):
        plan: Mapping[str, Any] = entries[0]["plan"]
        return plan
    return {}


def finished_entry(entries: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """A journal's last `finished` entry; None while the failover runs."""
    done = [e for e in entries if e.get("event") == "finished"]
    return done[-1] if done else None


def promotion_of(
    journals: Mapping[str, Sequence[Mapping[str, Any]]], broker_name: str
) -> str | None:
    """The first promotion of ``broker_name`` among these journals (by planned time)."""
    found = [
        (float(entries[0].get("at", 0.0)), fid)
        for fid, entries in journals.items()
        if _plan(entries).get("kind") == "promote"
        and _plan(entries).get("broker_name") == broker_name
    ]
    return min(found)[1] if found else None


@dataclass(frozen=True)
class DrillObservations:
    """Everything a drill recorded; build_report turns it into the report."""

    run_id: str
    broker_name: str
    fault: str
    fault_at: float  # when the fault was in effect (the signal command returned)
    old_master_key: str
    old_master_addr: str
    sends: tuple[SendRecord, ...]
    receives: tuple[ReceiveRecord, ...]
    journals: Mapping[str, Sequence[Mapping[str, Any]]]  # failovers begun during the drill
    daemon_log: Sequence[Mapping[str, Any]] = ()
    drill_events: tuple[TimelineEvent, ...] = ()
    stored_seqs: frozenset[int] | None = None
    stored_at: Mapping[int, tuple[int, int]] | None = None  # seq -> (queue id, queue offset)
    judgement: GroupJudgement | None = None
    old_master_started_at: float | None = None
    old_master_safe_at: float | None = None
    problems: tuple[str, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)
    # When the drill ended: automatic failovers of the group blocked until then (anti-flap).
    blocked_until: float | None = None
    block_reason: str = ""


def build_report(obs: DrillObservations) -> DrillReport:
    """The drill's report from its observations (pure: the same input, the same report)."""
    t0 = obs.fault_at
    problems = list(obs.problems)
    timeline: list[TimelineEvent] = list(obs.drill_events)
    # The daemon may see a crash before the fault command returns (a sandbox kill returns once
    # the process is gone): its lines count from when that command began.
    began = min((e.at for e in obs.drill_events if e.event == "fault"), default=t0)
    timeline += daemon_log_events(obs.daemon_log, obs.broker_name, min(began, t0))

    promo_id = promotion_of(obs.journals, obs.broker_name)
    plan = _plan(obs.journals[promo_id]) if promo_id else {}
    # Added before the journal's events: at the same time, the judgement comes before the plan.
    if promo_id and not any(e.event == "objectively_down" for e in timeline):
        # No daemon log (a daemon the drill did not start): the daemon plans a promotion in
        # the very cycle that judges the master objectively down, so the plan's time is it.
        planned = number_field(obs.journals[promo_id][0], "at")
        if planned is not None:
            timeline.append(
                TimelineEvent(
                    planned,
                    "journal",
                    "objectively_down",
                    f"(when planned) {plan.get('reason', '')}",
                )
            )
    for fid, entries in obs.journals.items():
        timeline += journal_events(fid, entries)
    finished = finished_entry(obs.journals[promo_id]) if promo_id else None
    outcome = str(finished.get("outcome")) if finished else None
    if obs.fault == "partition":
        if promo_id is not None:
            problems.append(
                f"the daemon failed over ({promo_id}, {outcome or 'not finished'}) although "
                "clients could still reach the master"
            )
    elif promo_id is None:
        problems.append("the daemon started no promotion of the group")
    elif outcome is None:
        problems.append(f"failover {promo_id} did not finish")
    elif outcome != "succeeded":
        problems.append(
            f"failover {promo_id} {outcome}: {finished.get('detail') if finished else ''}"
        )
    fenced = any(
        _plan(e).get("kind") == "fence" and _plan(e).get("broker_name") == obs.broker_name
        for e in obs.journals.values()
    )
    moved_aside = tuple(
        {k: entry.get(k) for k in ("broker_key", "path", "bytes", "messages", "summary")}
        for entries in obs.journals.values()
        if _plan(entries).get("broker_name") == obs.broker_name
        for entry in entries
        if entry.get("event") == "store_moved_aside"
    )

    outage, first, failed_between = write_outage(obs.sends, t0)
    if first is None:
        problems.append("the producer saw no successful write after the fault")
    else:
        timeline.append(
            TimelineEvent(
                first.ended_at,
                "producer",
                "first_write",
                f"message {first.seq} acknowledged after {failed_between} failed sends",
            )
        )
    messages = account_messages(obs.sends, obs.receives, t0, obs.stored_seqs, obs.stored_at)
    caught_up = consumer_caught_up_at(obs.sends, obs.receives, first, t0, messages.skipped_seqs)
    if caught_up is not None:
        timeline.append(
            TimelineEvent(
                caught_up,
                "consumer",
                "consumer_caught_up",
                "every surviving message up to the first write after the fault delivered",
            )
        )
    elif first is not None:
        problems.append(
            f"the consumer never received message {first.seq}, the first write after the fault"
        )
    if messages.unconsumed_after_fault > messages.skipped:
        problems.append(
            f"{messages.unconsumed_after_fault - messages.skipped} messages acknowledged after "
            "the fault were never delivered to the consumer"
        )
    expected = plan.get("expected_loss_bytes")
    max_loss = plan.get("max_loss_bytes", expected)
    if messages.not_stored and max_loss == 0:
        problems.append(
            f"{messages.not_stored} acknowledged messages are no longer stored, although the "
            "promotion plan expected no loss"
        )

    judgement = obs.judgement
    is_safe = judgement is not None and judgement.is_safe
    if judgement is None:
        problems.append("the old master was not started again")
    elif not judgement.is_safe:
        problems.append(f"the group was not safe at the end: {judgement.detail}")

    def since_fault(event: str) -> float | None:
        times = [e.at for e in timeline if e.event == event]
        return min(times) - t0 if times else None

    timeline.sort(key=lambda e: e.at)
    safe_after = None
    if obs.old_master_safe_at is not None and obs.old_master_started_at is not None:
        safe_after = obs.old_master_safe_at - obs.old_master_started_at
    return DrillReport(
        run_id=obs.run_id,
        broker_name=obs.broker_name,
        fault=obs.fault,
        fault_at=t0,
        old_master_key=obs.old_master_key,
        old_master_addr=obs.old_master_addr,
        is_ok=not problems,
        problems=tuple(problems),
        timeline=tuple(timeline),
        messages=messages,
        new_master_key=plan.get("new_master_key"),
        new_master_addr=plan.get("new_master_addr"),
        failover_id=promo_id,
        failover_outcome=outcome,
        expected_loss_bytes=expected if isinstance(expected, int) else None,
        max_loss_bytes=max_loss if isinstance(max_loss, int) else None,
        odown_after_seconds=since_fault("objectively_down"),
        promoted_after_seconds=since_fault("promoted"),
        failover_finished_after_seconds=(
            float(finished["at"]) - t0
            if finished and number_field(finished, "at") is not None
            else None
        ),
        first_write_after_seconds=None if first is None else first.ended_at - t0,
        write_outage_seconds=outage,
        failed_sends_in_outage=failed_between,
        consumer_caught_up_after_seconds=None if caught_up is None else caught_up - t0,
        old_master_safe=is_safe,
        old_master_detail=judgement.detail if judgement else "not started again",
        old_master_fenced=fenced,
        moved_aside=moved_aside,
        old_master_safe_after_seconds=safe_after if is_safe else None,
        master_key=judgement.master_key if judgement and is_safe else None,
        master_addr=judgement.master_addr if judgement and is_safe else None,
        files=obs.files,
        blocked_until=obs.blocked_until,
        block_reason=obs.block_reason,
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def render_report(report: DrillReport) -> str:
    """The report as text: the timeline, then the numbers, then the verdict."""
    fault = {
        "kill": "kill -9",
        "stop": "SIGSTOP",
        "partition": "a partition from the watchdog",
    }.get(report.fault, report.fault)
    lines = [
        f"drill {report.run_id}: {fault} of {report.broker_name}'s master "
        f"{report.old_master_key}@{report.old_master_addr}",
        "",
        "timeline (seconds from the fault):",
    ]
    for e in report.timeline:
        detail = e.detail if len(e.detail) <= 160 else e.detail[:157] + "..."
        lines.append(f"  {e.at - report.fault_at:+8.2f}  {e.source:<8} {e.event}: {detail}")
    m = report.messages
    lines += [
        "",
        (
            f"objectively down after {_seconds(report.odown_after_seconds)}, promoted after "
            f"{_seconds(report.promoted_after_seconds)}, failover {report.failover_outcome or '-'} "
            f"after {_seconds(report.failover_finished_after_seconds)}"
            if report.failover_id
            else "no failover"
        ),
        f"write outage seen by the producer: {_seconds(report.write_outage_seconds)} "
        f"({report.failed_sends_in_outage} sends failed); first write "
        f"{_seconds(report.first_write_after_seconds)} after the fault; consumer caught up after "
        f"{_seconds(report.consumer_caught_up_after_seconds)}",
        f"messages: {m.sent} sent, {m.acked} acked ({m.acked_before_fault} before the fault), "
        f"{m.lost} lost, {m.duplicated} duplicated, {m.unconsumed_after_fault} acked after the "
        f"fault but not delivered, {m.consumed_unacked} delivered although the send failed"
        + ("" if m.not_stored is None else f"; {m.not_stored} acked messages no longer stored"),
    ]
    if m.lost_seqs:
        lines.append(f"  lost: {', '.join(map(str, m.lost_seqs[:_SAMPLE]))}")
    if m.skipped:
        lines.append(
            f"  {m.skipped} acked after the fault, stored, but skipped by the consumer: the new "
            f"master reused queue offsets of messages lost with the old master "
            f"({', '.join(map(str, m.skipped_seqs[:_SAMPLE]))})"
        )
    if report.expected_loss_bytes is not None:
        bound = report.max_loss_bytes
        lines.append(
            f"  the promotion plan reported the slave {report.expected_loss_bytes} bytes behind"
            + ("" if bound is None else f", a loss of at most {bound} bytes")
        )
    rejoin = "came back safely" if report.old_master_safe else "did NOT come back safely"
    if report.fault == "partition" and report.failover_id is None:
        rejoin = "stayed the master" if report.old_master_safe else "did NOT stay the only master"
    lines.append(
        f"old master {report.old_master_key} {rejoin}"
        + (" (fenced: store moved aside)" if report.old_master_fenced else "")
        + (
            f" {_seconds(report.old_master_safe_after_seconds)} after its start"
            if report.old_master_safe_after_seconds is not None
            else ""
        )
        + f": {report.old_master_detail}"
    )
    for moved in report.moved_aside:
        lines.append(
            f"  moved aside: {moved.get('messages')} message(s), {moved.get('bytes')} bytes past "
            f"the promotion point, from {moved.get('broker_key')} to {moved.get('path')}"
        )
    if report.blocked_until is not None:
        until = format_utc(report.blocked_until)
        lines.append(
            f"automatic failovers of {report.broker_name} are now blocked until {until} "
            f"({report.block_reason}): a second fault before then is not failed over "
            f"automatically; `rmq-watchdog ack -c FILE --broker-name {report.broker_name}` lifts "
            "the block"
        )
    lines.append("")
    if report.is_ok:
        lines.append("drill passed")
    else:
        lines.append("drill FAILED:")
        lines += [f"  - {p}" for p in report.problems]
    return "\n".join(lines)
