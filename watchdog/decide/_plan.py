"""Pure failover planning: a Promote or Fence decision plus config and files -> the exact steps."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..config import BrokerConfig, WatchdogConfig
from ..model import MASTER_ROLES, PropertiesFile, unified_diff
from ..remoting import group_topic
from ._decision import Fence, Promote
from ._inplace import PluginAnswer, in_place_path

__all__ = [
    "CANDIDATE_LANE",
    "FENCE_LANE",
    "StepKind",
    "Step",
    "Plan",
    "Refusal",
    "plan_promotion",
    "plan_fence",
    "canary_topic",
    "properties_diffs",
]


# The lanes of a promotion that fences its old master side by side with the candidate's stop.
FENCE_LANE = "fence"
CANDIDATE_LANE = "candidate"


class StepKind(enum.StrEnum):
    STOP = "stop"  # run the broker's stop command; done when it no longer answers
    FENCE_COMMAND = "fence_command"  # the host's STONITH-style command, when the host fence failed
    CONFIRM_FENCED = "confirm_fenced"  # no fence, no promotion: the gate before the candidate
    REWRITE = "rewrite"  # edit keys of its properties file (backup first, atomic write)
    MOVE_STORE_ASIDE = "move_store_aside"  # rename its store dir: a longer log cannot rejoin
    START = "start"  # run its start command; done when it answers
    WAIT_MASTER = "wait_master"  # every nameserver lists it as id 0
    CANARY = "canary"  # a real client writes and reads through the group
    RECORD_EPOCH = "record_epoch"  # new epoch in state, .epoch files, nameserver KV
    # The broker plug-in (broker-plugin/README.md): promoted in its running JVM (else the plan's
    # fallback: stop, rewrite, start); a slave re-pointed; a lowered role restored, recorded.
    PROMOTE_IN_PLACE = "promote_in_place"
    SET_HA_MASTER = "set_ha_master"  # a slave's replication re-pointed without a restart
    SET_MASTER_ROLE = "set_master_role"  # decide/_restore.py
    RECORD_ROLE = "record_role"  # lowered_from cleared in state.json
    # A planned switchover (decide/_switchover.py):
    STOP_WRITES = "stop_writes"  # the live master refuses writes (brokerRole=SLAVE, perm 4)
    CATCH_UP = "catch_up"  # the candidate within N bytes of the master's log end (0: equal)
    RESTORE_WRITES = "restore_writes"  # the write stop undone (the switchover's rollback)
    VERIFY_REJOIN = "verify_rejoin"  # the old master replicates from the new one


@dataclass(frozen=True)
class Step:
    kind: StepKind
    broker_key: str
    host: str
    purpose: str  # one sentence, shown in dry runs and logged with the step
    argv: tuple[str, ...] = ()
    path: str = ""
    edits: tuple[tuple[str, str], ...] = ()
    # A step whose failure is recorded as skipped and does not end the plan: the old master's
    # fence steps (the confirm_fenced gate then judges what they achieved) and rollback edits.
    is_best_effort: bool = False
    # Steps of one lane run in order, lanes run side by side; a step without a lane ("") waits
    # for every step before it (Plan.waits_for). Plans journaled before lanes have none.
    lane: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "broker_key": self.broker_key,
            "host": self.host,
            "purpose": self.purpose,
            "argv": list(self.argv),
            "path": self.path,
            "edits": [list(e) for e in self.edits],
            "is_best_effort": self.is_best_effort,
            "lane": self.lane,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Step:
        return cls(
            kind=StepKind(data["kind"]),
            broker_key=str(data["broker_key"]),
            host=str(data["host"]),
            purpose=str(data["purpose"]),
            argv=tuple(str(a) for a in data.get("argv", ())),
            path=str(data.get("path", "")),
            edits=tuple((str(k), str(v)) for k, v in data.get("edits", ())),
            is_best_effort=bool(data.get("is_best_effort", False)),
            lane=str(data.get("lane") or ""),
        )


@dataclass(frozen=True)
class Plan:
    kind: str  # "promote" or "fence"
    broker_name: str
    reason: str
    epoch: int  # the group's epoch once this plan has run
    steps: tuple[Step, ...]
    # Undo of the promotion when the candidate never registers as master.
    rollback: tuple[Step, ...] = ()
    # The restart path's candidate steps (stop, rewrite, start), run in place of a
    # PROMOTE_IN_PLACE step that fails; the plan then goes on after that step. Empty on the
    # restart path.
    fallback: tuple[Step, ...] = ()
    old_master_key: str | None = None
    old_master_addr: str | None = None
    new_master_key: str | None = None
    new_master_addr: str | None = None
    candidate_offset: int | None = None
    expected_loss_bytes: int | None = None
    max_loss_bytes: int | None = None
    new_role: str | None = None
    details: tuple[tuple[str, str], ...] = field(default=())
    # The fence's nameserver and operator paths, as known when the plan was made.
    old_master_registered_on: int = 0
    deregistered_for_seconds: float | None = None
    fenced_by_operator: bool = False
    master_write_rate: float = 0.0  # bytes/s; max_loss_bytes grows by it until the fence
    # Decided because the master was unreachable (not an operator's --force of a live one):
    # called off if the old master answers again before it is stopped.
    requires_master_down: bool = True
    decided_at: float | None = None  # wall time of the decision
    # The old master's role when the new master gets a lower one (SYNC_MASTER promoted as
    # ASYNC_MASTER: no slave left); None when the role is kept.
    lowered_from: str | None = None

    def waits_for(self, index: int) -> frozenset[int]:
        """The steps that must be done before step `index` starts: the earlier steps of its
        lane and every earlier step without one; a step without a lane (a join) waits for
        every step before it. A plan without lanes runs one step after the other."""
        lane = self.steps[index].lane
        return frozenset(
            j
            for j in range(index)
            if not lane or not self.steps[j].lane or self.steps[j].lane == lane
        )

    @property
    def in_place_index(self) -> int | None:
        """The index of the PROMOTE_IN_PLACE step; None on the restart path."""
        return next(
            (i for i, s in enumerate(self.steps) if s.kind is StepKind.PROMOTE_IN_PLACE), None
        )

    @property
    def lanes(self) -> tuple[str, ...]:
        """The plan's lanes in the order their first steps appear."""
        return tuple(dict.fromkeys(s.lane for s in self.steps if s.lane))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "broker_name": self.broker_name,
            "reason": self.reason,
            "epoch": self.epoch,
            "old_master_key": self.old_master_key,
            "old_master_addr": self.old_master_addr,
            "new_master_key": self.new_master_key,
            "new_master_addr": self.new_master_addr,
            "candidate_offset": self.candidate_offset,
            "expected_loss_bytes": self.expected_loss_bytes,
            "max_loss_bytes": self.max_loss_bytes,
            "new_role": self.new_role,
            "details": [list(d) for d in self.details],
            "old_master_registered_on": self.old_master_registered_on,
            "deregistered_for_seconds": self.deregistered_for_seconds,
            "fenced_by_operator": self.fenced_by_operator,
            "master_write_rate": self.master_write_rate,
            "requires_master_down": self.requires_master_down,
            "decided_at": self.decided_at,
            "lowered_from": self.lowered_from,
            "steps": [s.to_json() for s in self.steps],
            "rollback": [s.to_json() for s in self.rollback],
            "fallback": [s.to_json() for s in self.fallback],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        def opt_int(v: Any) -> int | None:
            return None if v is None else int(v)

        def opt_str(v: Any) -> str | None:
            return None if v is None else str(v)

        return cls(
            kind=str(data["kind"]),
            broker_name=str(data["broker_name"]),
            reason=str(data["reason"]),
            epoch=int(data["epoch"]),
            steps=tuple(Step.from_json(s) for s in data["steps"]),
            rollback=tuple(Step.from_json(s) for s in data.get("rollback", ())),
            fallback=tuple(Step.from_json(s) for s in data.get("fallback", ())),
            old_master_key=opt_str(data.get("old_master_key")),
            old_master_addr=opt_str(data.get("old_master_addr")),
            new_master_key=opt_str(data.get("new_master_key")),
            new_master_addr=opt_str(data.get("new_master_addr")),
            candidate_offset=opt_int(data.get("candidate_offset")),
            expected_loss_bytes=opt_int(data.get("expected_loss_bytes")),
            max_loss_bytes=opt_int(data.get("max_loss_bytes")),
            new_role=opt_str(data.get("new_role")),
            details=tuple((str(k), str(v)) for k, v in data.get("details", ())),
            old_master_registered_on=int(data.get("old_master_registered_on") or 0),
            deregistered_for_seconds=None
            if data.get("deregistered_for_seconds") is None
            else float(data["deregistered_for_seconds"]),
            fenced_by_operator=bool(data.get("fenced_by_operator", False)),
            master_write_rate=float(data.get("master_write_rate") or 0.0),
            requires_master_down=bool(data.get("requires_master_down", True)),
            decided_at=None if data.get("decided_at") is None else float(data["decided_at"]),
            lowered_from=opt_str(data.get("lowered_from")),
        )


@dataclass(frozen=True)
class Refusal:
    broker_name: str
    reason: str


def canary_topic(prefix: str, broker_name: str) -> str:
    """The canary topic of one broker group ([failover] canary_topic_prefix)."""
    return group_topic(prefix, broker_name)


def _ha_addr(addr: str) -> str:
    host, _, port = addr.rpartition(":")
    return f"{host}:{int(port) + 1}"  # 4.x always serves HA on listenPort + 1


def _stop(b: BrokerConfig, purpose: str, *, best_effort: bool = False) -> Step:
    return Step(StepKind.STOP, b.key, b.host, purpose, argv=b.stop, is_best_effort=best_effort)


def _stop_candidate(b: BrokerConfig, config: WatchdogConfig) -> Step:
    """The candidate's stop before its restart as master, as [failover] candidate_stop says:
    its `kill` argv (no graceful shutdown: the next boot recovers the store as after a crash),
    or its `stop` argv; "kill" without a `kill` argv falls back to `stop`, and says so."""
    where = f"the candidate {b.key}@{b.addr}"
    if config.failover.candidate_stop == "kill":
        if b.kill:
            return Step(
                StepKind.STOP,
                b.key,
                b.host,
                f"kill {where} with its kill command (candidate_stop = kill: no graceful "
                "shutdown; its next boot recovers the store as after a crash)",
                argv=b.kill,
            )
        return _stop(
            b,
            f"stop {where} with its stop command (candidate_stop = kill, but it has no kill "
            "command: graceful shutdown)",
        )
    return _stop(b, f"stop {where} with its stop command (candidate_stop = graceful)")


def _start(b: BrokerConfig, purpose: str) -> Step:
    return Step(StepKind.START, b.key, b.host, purpose, argv=b.start)


def _rewrite(
    b: BrokerConfig, edits: dict[str, str], purpose: str, *, best_effort: bool = False
) -> Step:
    return Step(
        StepKind.REWRITE,
        b.key,
        b.host,
        purpose,
        path=b.properties,
        edits=tuple(edits.items()),
        is_best_effort=best_effort,
    )


def _current_id(b: BrokerConfig, files: Mapping[str, str | None]) -> int:
    text = files.get(b.key)
    if text is not None:
        value = PropertiesFile.parse(text).get("brokerId")
        if value is not None and value.strip().lstrip("-").isdigit():
            return int(value.strip())
    return b.broker_id


def plan_promotion(
    decision: Promote,
    config: WatchdogConfig,
    files: Mapping[str, str | None],
    current_epoch: int,
    *,
    namesrv_addrs: tuple[str, ...] | None = None,
    plugins: Mapping[str, PluginAnswer] | None = None,
) -> Plan | Refusal:
    """The steps that make `decision.candidate_key` the master of its group.

    `files` maps broker keys to the current text of their properties files (None: unreadable);
    it is read by the caller, so this function stays pure and a dry run shows the same diffs.
    `plugins` maps broker keys to their PLUGIN_INFO answers, asked by the caller when
    [failover] promotion = "inplace": with a usable plug-in on the candidate the plan promotes
    it in place (in_place_path says why or why not) and carries the restart path's candidate
    steps as its fallback.
    """
    name = decision.broker_name
    candidate = config.broker_by_key(decision.candidate_key)
    if candidate is None or candidate.addr != decision.candidate_addr:
        return Refusal(name, f"candidate {decision.candidate_key} is not in the configuration")
    if files.get(candidate.key) is None:
        return Refusal(
            name,
            f"cannot read {candidate.key}'s properties {candidate.properties} on {candidate.host}",
        )
    if decision.new_role not in MASTER_ROLES:
        return Refusal(name, f"new role {decision.new_role!r} is not a master role")
    old = config.broker_by_key(decision.old_master_key) if decision.old_master_key else None
    candidate_old_id = _current_id(candidate, files)
    new_role = decision.new_role
    details: list[tuple[str, str]] = [("namesrv", ";".join(namesrv_addrs or config.nameservers))]
    old_key = old.key if old else ""
    others = [b for b in config.group(name) if b.key not in (candidate.key, old_key)]
    if (
        new_role == "SYNC_MASTER"
        and not others
        and config.failover.sync_master_without_slave == "async"
    ):
        # A SYNC_MASTER with no slave attached answers every write SLAVE_NOT_AVAILABLE (the C++
        # client, hence Python and the canary, treats that as a failed send): with no slave left
        # until the old master rejoins, the group is only writable as ASYNC_MASTER.
        new_role = "ASYNC_MASTER"
        details.append(
            (
                "role",
                "SYNC_MASTER -> ASYNC_MASTER: no other slave in the group; set "
                "brokerRole=SYNC_MASTER again once a slave is attached",
            )
        )
    epoch = current_epoch + 1
    is_in_place, path = in_place_path(config, candidate.key, plugins, epoch)
    details.append(("path", path))
    steps: list[Step] = []
    # The restart path's: on the in-place path, the fallback.
    candidate_steps = [
        _stop_candidate(candidate, config),
        _rewrite(
            candidate,
            {"brokerId": "0", "brokerRole": new_role},
            f"make {candidate.key} the master: brokerId=0, brokerRole={new_role}",
        ),
    ]
    if old is not None and old.key != candidate.key:
        is_dropped = decision.deregistered_for_seconds is not None
        fence = _fence_steps(old, candidate_old_id, config, is_dropped=is_dropped)
        gate = _confirm_fenced(old)
        details.append(("fence", _fence_paths_text(decision, old, config)))
        if is_in_place:
            details.append(
                (
                    "order",
                    "in sequence: promoted in place, the candidate has nothing to do before the "
                    "confirm_fenced gate; it is promoted right after it",
                )
            )
            steps.extend([*fence, gate])
        else:
            side_by_side, why = _is_fenced_side_by_side(decision, files.get(old.key) is not None)
            details.append(("order", why))
            if side_by_side:
                # The gate joins the lanes: the candidate starts only once both are done and
                # the fence is confirmed; a gate that fails rolls the candidate back
                # (progress.py).
                steps.extend(replace(s, lane=FENCE_LANE) for s in fence)
                steps.extend(replace(s, lane=CANDIDATE_LANE) for s in candidate_steps)
                steps.append(gate)
            else:
                steps.extend([*fence, gate, *candidate_steps])
    elif not is_in_place:
        steps.extend(candidate_steps)
    start = _start(candidate, f"start {candidate.key} as {new_role}")
    if is_in_place:
        steps.append(
            Step(
                StepKind.PROMOTE_IN_PLACE,
                candidate.key,
                candidate.host,
                f"promote {candidate.key}@{candidate.addr} in place as {new_role} (its broker "
                "plug-in; no restart), once two runtime-info reads show its log end holding "
                "still and fully dispatched; refused or failed: the fallback below instead",
            )
        )
        steps.append(
            _rewrite(
                candidate,
                {"brokerId": "0", "brokerRole": new_role},
                f"make {candidate.key}'s properties say what it now is: brokerId=0, "
                f"brokerRole={new_role} (not restarted: a later restart keeps the role)",
            )
        )
    else:
        steps.append(start)
    steps.append(
        Step(
            StepKind.WAIT_MASTER,
            candidate.key,
            candidate.host,
            f"wait until every nameserver lists {candidate.addr} as {name} id 0",
        )
    )
    if config.failover.canary:
        topic = canary_topic(config.failover.canary_topic_prefix, name)
        steps.append(
            Step(
                StepKind.CANARY,
                candidate.key,
                candidate.host,
                f"a real client sends and receives a message through {name} (topic {topic})",
                path=topic,
            )
        )
    new_ha = _ha_addr(candidate.addr)
    for other in others:
        text = files.get(other.key)
        pinned = PropertiesFile.parse(text).get("haMasterAddress") if text else None
        answer = (plugins or {}).get(other.key)
        if is_in_place and answer is not None and answer.why_not(other.key, epoch) is None:
            if pinned:
                steps.append(
                    _rewrite(
                        other,
                        {"haMasterAddress": new_ha},
                        f"re-point slave {other.key}: haMasterAddress {pinned} -> {new_ha} "
                        "(not restarted: for its next start; SET_HA_MASTER re-points it now)",
                    )
                )
            steps.append(
                Step(
                    StepKind.SET_HA_MASTER,
                    other.key,
                    other.host,
                    f"re-point slave {other.key} in place (its plug-in): replicate from "
                    f"{candidate.key} (HA {new_ha}), unless its log reaches past the promotion "
                    "point" + ("" if pinned else "; else the nameservers re-point it within 30 s"),
                    is_best_effort=True,
                )
            )
        elif pinned:
            steps.append(_stop(other, f"re-point slave {other.key}: stop it"))
            steps.append(
                _rewrite(
                    other,
                    {"haMasterAddress": new_ha},
                    f"re-point slave {other.key}: haMasterAddress {pinned} -> {new_ha}",
                )
            )
            steps.append(_start(other, f"re-point slave {other.key}: start it"))
    steps.append(
        Step(
            StepKind.RECORD_EPOCH,
            candidate.key,
            candidate.host,
            f"record epoch {epoch}: {name} master is {candidate.key}@{candidate.addr}",
        )
    )
    if old is not None and old.key != candidate.key and not decision.requires_master_down:
        # An operator's switch away from a live master: it was healthy, so it comes back at
        # once, as a slave of the new master (its file says SLAVE since the fence).
        steps.append(_start(old, f"rejoin the old master {old.key} as a slave of {candidate.key}"))
    fallback = (
        tuple(
            replace(s, purpose=f"fallback (restart path): {s.purpose}")
            for s in (*candidate_steps, start)
        )
        if is_in_place
        else ()
    )
    original = PropertiesFile.parse(files[candidate.key] or "")
    rollback = [
        _stop(candidate, f"roll back: stop {candidate.key}"),
        _rewrite(
            candidate,
            {
                "brokerId": original.get("brokerId") or str(candidate.broker_id),
                "brokerRole": original.get("brokerRole") or "SLAVE",
            },
            f"roll back: restore {candidate.key}'s properties",
        ),
        _start(candidate, f"roll back: start {candidate.key} as slave again"),
    ]
    old_text = files.get(old.key) if old is not None and old.key != candidate.key else None
    if old is not None and old_text is not None:
        # Left fenced, the old master would come back as a slave holding the candidate's id:
        # two brokers under one id, and no master. Restored, it comes back as it was.
        was = PropertiesFile.parse(old_text)
        rollback.append(
            _rewrite(
                old,
                {
                    "brokerId": was.get("brokerId") or str(old.broker_id),
                    "brokerRole": was.get("brokerRole") or decision.new_role,
                },
                f"roll back: restore the old master {old.key}'s properties (it is not restarted)",
                best_effort=True,
            )
        )
    return Plan(
        kind="promote",
        broker_name=name,
        reason=decision.reason,
        epoch=epoch,
        steps=tuple(steps),
        rollback=tuple(rollback),
        fallback=fallback,
        old_master_key=old.key if old else decision.old_master_key,
        old_master_addr=decision.old_master_addr,
        new_master_key=candidate.key,
        new_master_addr=candidate.addr,
        candidate_offset=decision.candidate_offset,
        expected_loss_bytes=decision.expected_loss_bytes,
        max_loss_bytes=decision.max_loss_bytes,
        new_role=new_role,
        details=tuple(details),
        old_master_registered_on=decision.old_master_registered_on,
        deregistered_for_seconds=decision.deregistered_for_seconds,
        fenced_by_operator=decision.fenced_by_operator,
        master_write_rate=decision.master_write_rate,
        requires_master_down=decision.requires_master_down,
        decided_at=decision.decided_at,
        lowered_from=decision.new_role if new_role != decision.new_role else None,
    )


def fence_command_argv(old: BrokerConfig, config: WatchdogConfig) -> tuple[str, ...]:
    """The old master's host's fence command with its placeholders filled in (none: ())."""
    host = config.hosts.get(old.host)
    if host is None or not host.fence_command:
        return ()
    values = {
        "addr": old.addr,
        "host": old.host,
        "broker_name": old.broker_name,
        "broker_key": old.key,
    }
    return tuple(
        re.sub(r"\{(addr|host|broker_name|broker_key)\}", lambda m: values[m.group(1)], a)
        for a in host.fence_command
    )


def _is_fenced_side_by_side(decision: Promote, is_old_file_read: bool) -> tuple[bool, str]:
    """Whether the candidate is stopped and rewritten while the old master is fenced (only its
    start waits for the gate), and the sentence that says why or why not."""
    if not decision.requires_master_down:
        return False, (
            "in sequence: the old master answers (an operator's switch); the candidate is "
            "stopped only after it, so that its log holds everything the old master stored"
        )
    if decision.deregistered_for_seconds is None:
        return False, (
            "in sequence: a nameserver still lists the old master (or too few answer to say "
            "it is gone), so it may be alive and replicating to the candidate; the candidate "
            "is stopped only after the gate, and a failed fence leaves it untouched"
        )
    if not is_old_file_read:
        return False, (
            "in sequence: the old master's host did not answer the planner, so the fence may "
            "fail; the candidate is stopped only after the gate and stays untouched if it does"
        )
    return True, (
        "side by side: the old master was down and no answering nameserver (a majority) lists "
        "it (a crash drops it at once), so it is not feeding the candidate; the candidate is "
        "stopped and rewritten while the old master is fenced and starts only after the "
        "confirm_fenced gate (a failed gate restores it and starts it as a slave again)"
    )


def _fence_steps(
    old: BrokerConfig, freed_id: int, config: WatchdogConfig, *, is_dropped: bool
) -> list[Step]:
    """The old master's fence, gate excluded: rewrite, stop, then the fence command if any.

    The rewrite (properties, then the `.epoch` record the broker-host gate reads) comes first:
    a supervisor restarting the broker between a stop and a rewrite would read the master
    properties. Each step may fail (host down, partition); the gate judges what they
    achieved."""
    steps = [
        _rewrite(
            old,
            {"brokerId": str(freed_id), "brokerRole": "SLAVE"},
            f"fence the old master {old.key}, first rewrite: make it a slave with the freed id "
            f"{freed_id}, and its .epoch record say it may not be master, so a restart cannot "
            "bring it back as master",
            best_effort=True,
        ),
        _fence_stop(old, is_dropped=is_dropped),
    ]
    argv = fence_command_argv(old, config)
    if argv:
        steps.append(
            Step(
                StepKind.FENCE_COMMAND,
                old.key,
                "local",
                f"fence {old.key}@{old.addr} with the fence command of host {old.host}, "
                "if the host fence did not succeed",
                argv=argv,
                is_best_effort=True,
            )
        )
    return steps


def _fence_stop(old: BrokerConfig, *, is_dropped: bool) -> Step:
    """The old master's stop in its fence. Hung (still listed, not answering): its `kill` argv
    when it has one, since the graceful stop of a frozen JVM waits out the stop command's own
    timeout (6.8 s of an 11 s SIGSTOP failover, measured) and a deposed master's clean shutdown
    buys nothing its next boot's recovery does not redo. Dropped by the nameservers (its
    channels closed: a crash): its `stop`, which confirms a stopped broker in one command where
    a kill would fail on the missing process first (1.2-2.4 s instead of 0.8 s, measured)."""
    where = f"the old master {old.key}@{old.addr}"
    if old.kill and not is_dropped:
        return Step(
            StepKind.STOP,
            old.key,
            old.host,
            f"fence {where}, then kill it with its kill command (its file already says SLAVE; "
            "it may be hung, and a graceful stop of a hung JVM waits out its timeout)",
            argv=old.kill,
            is_best_effort=True,
        )
    why = (
        "the nameservers dropped it: its process is most likely gone"
        if is_dropped
        else "it has no kill command"
    )
    return _stop(
        old,
        f"fence {where}, then stop it with its stop command (its file already says SLAVE; "
        f"{why})",
        best_effort=True,
    )


def _confirm_fenced(old: BrokerConfig) -> Step:
    return Step(
        StepKind.CONFIRM_FENCED,
        old.key,
        old.host,
        f"no fence, no promotion: confirm {old.key}@{old.addr} can no longer take writes",
    )


def _fence_paths_text(decision: Promote, old: BrokerConfig, config: WatchdogConfig) -> str:
    grace = config.failover.fence_grace_seconds
    paths = [f"rewrite to SLAVE and stop on host {old.host}"]
    argv = fence_command_argv(old, config)
    if argv:
        paths.append("else the fence command " + " ".join(argv))
    gone = decision.deregistered_for_seconds
    if decision.old_master_registered_on:
        paths.append(f"else not the nameservers: {decision.old_master_registered_on} still list it")
    elif gone is not None:
        state = "passed" if gone >= grace else f"not yet ({gone:.1f} s)"
        paths.append(f"else the nameservers' drop + fence_grace {grace:g} s: {state}")
    if decision.fenced_by_operator:
        paths.append("else the operator's confirmation (--fenced-by-operator)")
    return "; ".join(paths)


def plan_fence(
    decision: Fence,
    config: WatchdogConfig,
    files: Mapping[str, str | None],
    current_epoch: int,
    *,
    target_offset: int | None,
    promotion_offset: int | None,
    used_ids: frozenset[int],
) -> Plan | Refusal:
    """Stop a second master; with policy `demote` bring it back as a slave on a clean log.

    `used_ids` are broker ids other members of the group hold now; the target gets the
    smallest free id >= 1. Its store is moved aside when its log reaches past the point where
    the current master was promoted (4.x replication cannot truncate a longer slave log).
    """
    name = decision.broker_name
    target = config.broker_by_key(decision.target_key)
    if target is None or target.addr != decision.target_addr:
        return Refusal(name, f"fence target {decision.target_key} is not in the configuration")
    free_id = next(i for i in range(1, len(used_ids) + 2) if i not in used_ids)
    steps = [
        # Rewrite before the stop: a supervisor restart in between must find a slave's file.
        _rewrite(
            target,
            {"brokerId": str(free_id), "brokerRole": "SLAVE"},
            f"fence {target.key}: make it a slave with free id {free_id}",
        ),
        _stop(target, f"fence {target.key}@{target.addr}: stop the second master")
        if not target.kill
        else Step(
            StepKind.STOP,
            target.key,
            target.host,
            f"fence {target.key}@{target.addr}: kill the second master (a graceful stop would "
            "unregister brokerId 0, the kept master's id, from every nameserver)",
            argv=target.kill,
        ),
    ]
    is_ahead = target_offset is None or promotion_offset is None or target_offset > promotion_offset
    policy = config.failover.old_master_policy
    if policy == "demote":
        if is_ahead:
            why = (
                f"its log ({target_offset}) reaches past the promotion point ({promotion_offset})"
                if target_offset is not None and promotion_offset is not None
                else "its log length relative to the promotion point is unknown"
            )
            steps.append(
                Step(
                    StepKind.MOVE_STORE_ASIDE,
                    target.key,
                    target.host,
                    f"move {target.key}'s store aside: {why}",
                    path=target.properties,
                )
            )
        steps.append(_start(target, f"start {target.key} as a slave of {decision.keep_key}"))
    steps.append(
        Step(
            StepKind.RECORD_EPOCH,
            decision.keep_key,
            target.host,
            f"record epoch {current_epoch}: {name} master stays {decision.keep_key}",
        )
    )
    keep = config.broker_by_key(decision.keep_key)
    return Plan(
        kind="fence",
        broker_name=name,
        reason=decision.reason
        + (" (policy quarantine: it stays stopped)" if policy == "quarantine" else ""),
        epoch=current_epoch,
        steps=tuple(steps),
        old_master_key=target.key,
        old_master_addr=target.addr,
        new_master_key=decision.keep_key,
        new_master_addr=keep.addr if keep else None,
        details=(
            ("policy", policy),
            ("target_offset", str(target_offset)),
            ("promotion_offset", str(promotion_offset)),
        ),
    )


def properties_diffs(
    plan: Plan, files: Mapping[str, str | None], config: WatchdogConfig
) -> list[str]:
    """The unified diff of every properties file the plan rewrites, edits applied in order."""
    texts: dict[str, str] = {}
    order: list[str] = []
    for step in plan.steps:
        if step.kind is not StepKind.REWRITE:
            continue
        if step.broker_key not in texts:
            original = files.get(step.broker_key)
            if original is None:
                continue
            texts[step.broker_key] = original
            order.append(step.broker_key)
        texts[step.broker_key] = (
            PropertiesFile.parse(texts[step.broker_key]).with_values(dict(step.edits)).render()
        )
    diffs = []
    for key in order:
        broker = config.broker_by_key(key)
        path = broker.properties if broker else key
        host = broker.host if broker else "?"
        diff = unified_diff(files[key] or "", texts[key], f"{host}:{path}")
        if diff:
            diffs.append(diff)
    return diffs
