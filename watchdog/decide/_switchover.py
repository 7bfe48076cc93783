"""Pure planning of a planned switchover: the live master's writes stopped, the candidate caught
up to its whole log, then the promotion's own steps (plan_promotion), the old master's rejoin."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..config import WatchdogConfig
from ..detect import GroupVerdict
from ..model import MASTER_ROLES, ClusterSnapshot, PropertiesFile
from ._decision import Promote
from ._inplace import PluginAnswer
from ._operator import manual_promote
from ._plan import CANDIDATE_LANE, FENCE_LANE, Plan, Refusal, Step, StepKind, plan_promotion

__all__ = [
    "WRITE_STOP_EDITS",
    "CatchUpBound",
    "catch_up_bound",
    "decide_switchover",
    "is_switchover",
    "plan_switchover",
    "writes_back",
]

# How a live 4.9.x master stops taking writes without a restart, checked on 4.9.7 brokers:
# UPDATE_BROKER_CONFIG brokerRole=SLAVE makes DefaultMessageStore.checkStoreStatus answer every
# put SERVICE_NOT_AVAILABLE (14) from that moment, while its HA service keeps sending the slave
# what it lacks; brokerPermission=4 re-registers its topics read-only on every nameserver at
# once, so a producer that re-reads its route stops choosing the group (and, with no writable
# queue left, re-reads it at every send: it writes as soon as the new master registers).
# brokerPermission=4 alone refuses only sends to ORDER topics (AbstractSendMessageProcessor
# .msgCheck): a producer with a cached route kept getting SEND_OK for normal topics.
WRITE_STOP_EDITS: tuple[tuple[str, str], ...] = (("brokerRole", "SLAVE"), ("brokerPermission", "4"))


def is_switchover(plan: Plan) -> bool:
    """Whether `plan` is a planned switchover (it stops a live master's writes first)."""
    return any(s.kind is StepKind.STOP_WRITES for s in plan.steps)


def writes_back(plan: Plan) -> Step | None:
    """A switchover's undo of its write stop (in its rollback); None for any other plan."""
    return next((s for s in plan.rollback if s.kind is StepKind.RESTORE_WRITES), None)


def decide_switchover(
    snapshot: ClusterSnapshot,
    group: GroupVerdict,
    config: WatchdogConfig,
    *,
    to_key: str | None,
    now: float,
) -> Promote | Refusal:
    """An operator's switchover of `group`: its master answers as master, and a slave that
    answers takes its role (`to_key`, or the one `choose_candidate` ranks first, with no lag
    limit: the switchover waits for it instead). A master that is down is `failover`'s."""
    name = group.broker_name
    if group.is_split_brain:
        return Refusal(name, f"{name} has two brokers answering as master ({group.reason})")
    master = snapshot.broker_at(group.master_addr) if group.master_addr else None
    if group.is_odown or master is None or not master.is_up or master.role not in MASTER_ROLES:
        return Refusal(
            name,
            f"a switchover moves the role away from a master that answers, and {name} has none "
            f"({group.state}: {group.reason}); `rmq-watchdog failover` handles a master that is "
            "down",
        )
    decision = manual_promote(snapshot, group, config, to_key=to_key, force=True, now=now)
    if isinstance(decision, Refusal):
        return decision
    old = f"{group.master_key}@{group.master_addr}"
    behind = decision.expected_loss_bytes
    lag = "" if behind is None else f"; {decision.candidate_key} {behind} bytes behind now"
    return replace(
        decision,
        state=group.state,
        # A switchover loses nothing acknowledged: the candidate must hold the master's whole
        # log, with the master refusing writes, before anything else changes.
        expected_loss_bytes=0,
        max_loss_bytes=0,
        master_write_rate=0.0,
        reason=(
            f"switchover of {name}: {old} -> {decision.candidate_key}@{decision.candidate_addr} "
            f"(an operator's planned switch; {old} answers as {master.role}{lag})"
        ),
    )


def plan_switchover(
    decision: Promote,
    config: WatchdogConfig,
    files: Mapping[str, str | None],
    current_epoch: int,
    *,
    catch_up_timeout_seconds: float,
    plugins: Mapping[str, PluginAnswer] | None = None,
) -> Plan | Refusal:
    """The switchover's steps around the promotion plan_promotion makes of `decision` (a live
    master's, requires_master_down False: fence, gate, candidate, rejoin of the old master):

    1. catch_up (writes still flow): the candidate within max_lag_bytes of the master's log end,
       so the write pause is not spent replicating a backlog; refused when not, nothing changed;
    2. stop_writes on the master (WRITE_STOP_EDITS, in its running JVM; its properties file,
       which UPDATE_BROKER_CONFIG rewrites whole, put back as it was);
    3. catch_up: the candidate's log end equal to the master's on two reads in a row. Not in
       time: refused, and the rollback's restore_writes gives the master its writes back;
    4. plan_promotion's steps, with its rejoin of the old master;
    5. verify_rejoin: the new master id 0 on the nameservers, the old one replicating from it.

    A failure after the candidate changed rolls back as plan_promotion's rollback does, then
    restore_writes (the old master's file put back, started again if stopped, writes on)."""
    name = decision.broker_name
    if decision.requires_master_down or decision.old_master_key is None:
        return Refusal(name, "a switchover needs a master that answers")
    old = config.broker_by_key(decision.old_master_key)
    candidate = config.broker_by_key(decision.candidate_key)
    if old is None or candidate is None:
        return Refusal(name, f"{decision.old_master_key} is not in the configuration")
    text = files.get(old.key)
    if text is None:
        # Its file is put back after the write stop and read again for the fence: unreadable,
        # neither could be done.
        return Refusal(name, f"cannot read {old.key}'s properties {old.properties} on {old.host}")
    base = plan_promotion(decision, config, files, current_epoch, plugins=plugins)
    if isinstance(base, Refusal):
        return base
    timeout = f"{catch_up_timeout_seconds:g}"
    lag = config.max_lag_bytes(name)
    role = decision.new_role  # the old master's role: what its writes come back as
    permission = PropertiesFile.parse(text).get("brokerPermission") or "6"
    who, cand = f"{old.key}@{old.addr}", f"{candidate.key}@{candidate.addr}"
    before = Step(
        StepKind.CATCH_UP,
        candidate.key,
        candidate.host,
        f"before anything changes: wait up to {timeout} s until {cand} is within {lag} bytes "
        f"of {who}'s log end (max_lag_bytes; writes still flow), else refuse",
        edits=(("within_bytes", str(lag)), ("timeout_seconds", timeout), ("master", old.key)),
    )
    stop = Step(
        StepKind.STOP_WRITES,
        old.key,
        old.host,
        f"stop new writes on {who} in its running JVM (UPDATE_BROKER_CONFIG brokerRole=SLAVE: "
        "every send answered SERVICE_NOT_AVAILABLE, replication goes on; brokerPermission=4: "
        "its routes read-only on every nameserver), then put its properties file back as it was "
        "(the request rewrites it whole)",
        path=old.properties,
        edits=WRITE_STOP_EDITS,
    )
    equal = Step(
        StepKind.CATCH_UP,
        candidate.key,
        candidate.host,
        f"wait up to {timeout} s until {cand}'s log end equals {who}'s on two reads in a row "
        "(it then holds every acknowledged message), else refuse and give the writes back",
        edits=(("within_bytes", "0"), ("timeout_seconds", timeout), ("master", old.key)),
    )
    verify = Step(
        StepKind.VERIFY_REJOIN,
        old.key,
        old.host,
        f"verify: every answering nameserver lists {cand} as {name} id 0, and {who} runs as "
        f"its slave, its log end reaching {candidate.key}'s",
    )
    restore = Step(
        StepKind.RESTORE_WRITES,
        old.key,
        old.host,
        f"give {who} its writes back: its properties and .epoch record as they were, started "
        f"again if it was stopped, brokerRole={role} and brokerPermission={permission} in its "
        "running JVM",
        argv=old.start,
        path=old.properties,
        edits=(("brokerRole", role), ("brokerPermission", permission)),
    )
    how = (
        "kill it with its kill command (its file says SLAVE already; it refuses writes and the "
        "candidate holds its whole log: a graceful stop would only lengthen the write pause)"
        if old.kill
        else "stop it with its stop command (it has no kill command; its file says SLAVE already)"
    )
    steps = tuple(
        replace(s, purpose=f"fence the old master {who}: {how}")
        if s.kind is StepKind.STOP and s.broker_key == old.key
        else s
        for s in base.steps
    )
    order = dict(base.details).get("order", "")
    if base.in_place_index is None:
        steps, order = _side_by_side(steps, candidate.key)
    details = (
        *((k, v) for k, v in base.details if k != "order"),
        ("order", order),
        (
            "switchover",
            f"writes stopped on {who} until {cand} holds its whole log (catch-up bound "
            f"{timeout} s, else refused and writes given back); nothing acknowledged is lost",
        ),
    )
    return replace(
        base,
        steps=(before, stop, equal, *steps, verify),
        rollback=(*base.rollback, restore),
        details=details,
    )


def _side_by_side(steps: tuple[Step, ...], candidate_key: str) -> tuple[tuple[Step, ...], str]:
    """The restart path's steps with the old master's fence and the candidate's stop and
    rewrite side by side (lanes), both before the confirm_fenced gate; the candidate starts
    only after it. Safe here as it is not for a live master in a failover: the candidate
    already holds the master's whole log, and the master takes no write, so stopping the
    candidate first loses nothing. A gate that fails rolls the candidate back."""
    gate = next(i for i, s in enumerate(steps) if s.kind is StepKind.CONFIRM_FENCED)
    fence = [replace(s, lane=FENCE_LANE) for s in steps[:gate]]
    candidate = [
        replace(s, lane=CANDIDATE_LANE)
        for s in steps[gate + 1 : gate + 3]
        if s.broker_key == candidate_key and s.kind in (StepKind.STOP, StepKind.REWRITE)
    ]
    if len(candidate) != 2:
        return steps, "in sequence"
    rest = steps[gate + 3 :]
    order = (
        "side by side: the candidate holds the old master's whole log and the old master takes "
        "no write, so the candidate is stopped and rewritten while the old master is fenced, "
        "and starts only after the confirm_fenced gate (a failed gate restores it)"
    )
    return (*fence, *candidate, steps[gate], *rest), order


@dataclass(frozen=True)
class CatchUpBound:
    """A catch_up step's parameters (they travel in its `edits`, so a journaled plan keeps
    them): how close the candidate must come, for how long to wait, to which master."""

    within_bytes: int  # 0: its log end equal to the master's on two reads in a row
    timeout_seconds: float
    master_key: str


def catch_up_bound(step: Step) -> CatchUpBound:
    """The parameters of a catch_up step; ValueError when it lacks them (a bad journal)."""
    fields = dict(step.edits)
    try:
        return CatchUpBound(
            int(fields["within_bytes"]), float(fields["timeout_seconds"]), fields["master"]
        )
    except KeyError as exc:
        raise ValueError(f"catch_up step without {exc}") from None
