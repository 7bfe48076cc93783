"""Several instances, one actor: the daemon's side of coord/ (who may act, the state committed
to etcd under the leader's fencing token before every failover step, the takeover).

Used only with an `[etcd]` table; without one the daemon runs alone under its state-dir lock.
Each cycle of every instance:

    probe -> + the other instances' views (from the previous cycle) as secondary observations
          -> detect -> publish this instance's own views (`coord.cycle`) -> decide
          -> act only when `may_act`: this instance holds the leader key AND has taken over

Keys under `<prefix>/state/` mirror the leader's state dir, so reading them back is writing
files: `state.json` (epochs, anti-flap blocks, the running map) and `failovers/<id>.jsonl`
(each failover's journal). Only the leader writes them, each time in one fenced transaction
that etcd commits only while the leader key is still held by this instance's lease.

- Before every step (rollback and fallback steps too) the executor's gate commits the running
  failover's journal and the state file. A refusal (deposed, or etcd unreachable) stops the run
  before that step, without rollback: `Deposed`. So does a lease no longer known to live
  while a step runs (the step is cancelled, as if the process had died there).
- Takeover: an instance that becomes leader (a new fencing token) first writes etcd's state
  file and journals into its own state dir (etcd's copy wins), then resumes or rolls back an
  interrupted failover from the journal exactly as after a crash. Until then it starts nothing.
- Failsafe: no etcd, no quorum, no lead -> no failover from this instance; probing, metrics
  and alerts go on. A non-leader logs what it would do once per change:
  "not the leader (wd-1): would act: promoting broker-a ...".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import structlog

from ..act import FailoverResult, Journal, StateError, StateStore, WatchdogState
from ..config import WatchdogConfig
from ..coord import (
    CoordError,
    CoordView,
    EtcdUnavailable,
    FenceRefused,
    ForwardedRequest,
    GroupView,
    InstanceView,
    LeaseGone,
    instance_observations,
)
from ..decide import Decision, Fence, Plan, Promote
from ..detect import ClusterVerdict
from ..model import ClusterSnapshot, SecondaryObservation, format_seconds
from ..observe import WatchdogMetrics

__all__ = [
    "STATE_KEY",
    "CoordinatorLike",
    "Deposed",
    "HaCoordination",
    "journal_key",
    "own_group_views",
    "view_disagreements",
]

log = structlog.get_logger("rmq_watchdog")

# Runs an operator's request (the control socket's dispatch) and sends its answers.
RequestHandler = Callable[[Mapping[str, Any], Callable[[Mapping[str, Any]], None]], Awaitable[None]]

STATE_KEY = "state.json"
_JOURNAL_KEY = re.compile(r"failovers/([A-Za-z0-9][A-Za-z0-9._:-]{0,200})\.jsonl")
# How often a running failover looks at the lease, and how much of it must be left.
_LEASE_WATCH_SECONDS = 0.1
_LEASE_MARGIN_SECONDS = 1.0


def journal_key(failover_id: str) -> str:
    return f"failovers/{failover_id}.jsonl"


class Deposed(CoordError):
    """This instance may no longer act: its failover stopped `where` (before or during a step)
    and the leader after it resumes the run from the journal in etcd."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where
        self.why = why


class CoordinatorLike(Protocol):
    """What the daemon uses of `coord.Coordinator` (a test hands in a fake)."""

    instance_name: str

    @property
    def lease_left_seconds(self) -> float: ...

    async def start(self) -> None: ...

    async def close(self, *, resign: bool = True) -> None: ...

    async def cycle(self, groups: Mapping[str, GroupView]) -> CoordView: ...

    async def fenced_write(
        self, puts: Mapping[str, bytes], deletes: tuple[str, ...] = ()
    ) -> int: ...

    async def read_state(self, prefix: str = "") -> dict[str, bytes]: ...

    async def take_requests(self) -> list[ForwardedRequest]: ...

    async def reply(
        self, request: ForwardedRequest, seq: int, message: Mapping[str, Any]
    ) -> None: ...


# -- pure: this instance's views, and the other instances' disagreement ---------------------


def own_group_views(snapshot: ClusterSnapshot, verdict: ClusterVerdict) -> dict[str, GroupView]:
    """Each group's master as this instance's own probe judges it: down = subjectively down
    (its own RPCs, or the crash rule), alive = its own probe answered this cycle. An isolated
    instance says neither: its "down" is about itself, not the master."""
    answered = {b.addr for b in snapshot.brokers if b.is_up}
    views: dict[str, GroupView] = {}
    for g in verdict.groups:
        alive = g.master_addr is not None and g.master_addr in answered
        down = g.is_sdown and not alive and not verdict.is_isolated
        silent = format_seconds(g.down_for_seconds)
        if g.master_addr is None:
            reason = "no master known"
        elif alive:
            reason = "own probe answered"
        elif verdict.is_isolated:
            reason = verdict.reason
        elif down:
            how = "refused" if g.is_crash_confirmed else "no reply"
            reason = f"own probe: {how} for {silent}"
        else:
            reason = f"own probe: no reply for {silent}, not yet down"
        views[g.broker_name] = GroupView(g.master_addr, down, alive, reason)
    return views


def view_disagreements(
    own_name: str,
    own: Mapping[str, GroupView],
    instances: Iterable[InstanceView],
    *,
    now_wall: float,
    max_age_seconds: float,
) -> dict[str, dict[str, bool]]:
    """group -> other instance -> whether its published view of the group's master (address,
    down, alive) differs from this instance's; a view older than `max_age_seconds` is left
    out (a stalled instance is another alert's business)."""
    out: dict[str, dict[str, bool]] = {name: {} for name in own}
    for instance in instances:
        if instance.name == own_name or abs(now_wall - instance.published_at) > max_age_seconds:
            continue
        for name, mine in own.items():
            out[name][instance.name] = not mine.same_judgement(instance.groups.get(name))
    return out


def step_name(index: int, phase: str) -> str:
    return f"step {index + 1}" if phase == "main" else f"{phase} step {index + 1}"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"{path}: cannot read for etcd: {exc.strerror}") from None


# -- the daemon's coordination ----------------------------------------------------------------


class HaCoordination:
    """One instance's part: the last `CoordView`, whether it may act, the step gate, the
    takeover. The daemon calls `cycle` once per cycle and acts only when `may_act`."""

    def __init__(
        self,
        coordinator: CoordinatorLike,
        config: WatchdogConfig,
        store: StateStore,
        journal: Journal,
        metrics: WatchdogMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.coordinator = coordinator
        self.name = coordinator.instance_name
        self.store = store
        self.journal = journal
        self.metrics = metrics
        self.clock = clock
        self.lease_ttl_seconds = config.etcd.lease_ttl_seconds if config.etcd else 10.0
        self.view: CoordView | None = None
        self._ready_term: int | None = None  # the fencing token whose takeover is done
        self._terms: dict[str, int | None] = {}  # failover id -> the term it runs under
        self._lease_lost: dict[str, str] = {}  # failover id -> where the lease watch stopped it
        self._would: dict[str, tuple[str, str]] = {}  # group -> (decision, leader) logged
        self._committed_state: bytes | None = None
        self._commit_lock = asyncio.Lock()
        self._was_reachable = True
        self._was_leader = False
        self._serving: set[asyncio.Task[None]] = set()  # requests taken from etcd, answering
        self._leader_seen: str | None = None

    # -- who acts ----------------------------------------------------------------------------

    @property
    def may_act(self) -> bool:
        """Leading (the last cycle confirmed the key, the lease is known to live beyond the
        margin) and taken over in this very term."""
        v = self.view
        return (
            v is not None
            and v.is_leader
            and v.fencing_token is not None
            and v.fencing_token == self._ready_term
            and self._lease_holds()
        )

    def _lease_holds(self) -> bool:
        margin = min(_LEASE_MARGIN_SECONDS, self.lease_ttl_seconds / 4)
        return self.coordinator.lease_left_seconds > margin

    @property
    def term(self) -> int | None:
        return self._ready_term if self.may_act else None

    def leader_text(self) -> str:
        v = self.view
        if v is None:
            return "no etcd answer yet"
        if not v.is_reachable:
            return "etcd unreachable"
        if v.is_leader:
            return "taking over"
        return v.leader_name or "nobody leads"

    def refusal(self) -> str | None:
        """Why this instance refuses an operator's failover or ack now (one line), or None."""
        if self.may_act:
            return None
        v, me = self.view, self.name
        if v is None or not v.is_reachable:
            return f"{me} is not the leader: it cannot reach etcd, so it acts on nothing"
        if v.is_leader:
            return f"{me} is taking over as leader (reading the state from etcd); try again"
        if v.leader_name:
            return f"{me} is not the leader: {v.leader_name} leads; ask {v.leader_name}"
        return f"{me} is not the leader and no instance leads now; try again in a few seconds"

    def label(self, decision: Decision, event: str) -> str:
        """The decision's sentence as this instance logs it: unchanged when it may act or has
        nothing to do; otherwise prefixed, and said once (a warning) per decision and leader."""
        name = decision.broker_name
        if not isinstance(decision, Promote | Fence) or self.may_act:
            self._would.pop(name, None)
            return event
        who = self.leader_text()
        if self._would.get(name) != (decision.kind, who):
            self._would[name] = (decision.kind, who)
            log.warning(f"not the leader ({who}): would act: {event}", broker_name=name)
        return f"not the leader, would act: {event}"

    # -- the cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.coordinator.start()

    async def close(self) -> None:
        if self._serving:  # their last answers (the daemon has waited for its failovers)
            _, late = await asyncio.wait(self._serving, timeout=2.0)
            for task in late:
                task.cancel()
        await self.coordinator.close(resign=True)

    def extra_observations(self, now_wall: float) -> tuple[SecondaryObservation, ...]:
        """The other instances' views of the previous cycle, for detect."""
        v = self.view
        if v is None or not v.is_reachable:
            return ()
        return instance_observations(
            self.name, v.instances, now_wall=now_wall, max_age_seconds=self.lease_ttl_seconds
        )

    async def cycle(
        self, groups: Mapping[str, GroupView], *, now_wall: float, is_busy: bool
    ) -> bool:
        """Publish this instance's views and learn who leads; take over when this instance
        has just become leader and runs no failover (`is_busy`: one still ends). True when it
        took over now: the daemon then resumes what the journals say was interrupted."""
        view = await self.coordinator.cycle(groups)
        self._announce(view)
        self.view = view
        took_over = False
        token = view.fencing_token
        if (
            view.is_leader
            and token is not None
            and token != self._ready_term
            and not is_busy
            and self._lease_holds()
        ):
            took_over = await self._take_over(token)
        self._export(groups, now_wall)
        return took_over

    def _announce(self, view: CoordView) -> None:
        """One line per change: etcd lost or back, leadership gained or lost, a new leader."""
        if view.is_reachable != self._was_reachable:
            self._was_reachable = view.is_reachable
            if not view.is_reachable:
                log.warning(
                    f"etcd unreachable: {self.name} is not the leader and starts no failover "
                    "until etcd answers again; probing goes on",
                    reason=view.reason,
                )
            else:
                log.info("etcd answers again", reason=view.reason)
        if view.is_leader != self._was_leader:
            self._was_leader = view.is_leader
            if view.is_leader:
                log.warning(f"{self.name} leads now", reason=view.reason)
            elif view.is_reachable:
                log.warning(f"{self.name} no longer leads", reason=view.reason)
        leader = view.leader_name if view.is_reachable else self._leader_seen
        if leader != self._leader_seen:
            self._leader_seen = leader
            if not view.is_leader:
                log.info(f"leader: {leader or 'nobody'}", reason=view.reason)

    def _export(self, groups: Mapping[str, GroupView], now_wall: float) -> None:
        v = self.view
        assert v is not None
        disagreement = (
            view_disagreements(
                self.name,
                groups,
                v.instances,
                now_wall=now_wall,
                max_age_seconds=self.lease_ttl_seconds,
            )
            if self.may_act
            else {}
        )
        self.metrics.update_coordination(
            is_leader=self.may_act,
            etcd_up=v.is_reachable,
            instances_seen=len(v.instances),
            view_disagreement=disagreement,
        )

    async def _take_over(self, token: int) -> bool:
        """etcd's state file and journals into the state dir (etcd's copy wins)."""
        try:
            records = await self.coordinator.read_state()
        except EtcdUnavailable as exc:
            log.warning(f"not taking over yet: cannot read the state in etcd: {exc}")
            return False
        state = records.get(STATE_KEY)
        if state is not None:
            try:
                WatchdogState.from_json(json.loads(state))
            except (ValueError, TypeError, AttributeError) as exc:
                log.error(
                    f"not taking over: {STATE_KEY} in etcd is not a state file ({exc}); "
                    "no failover until it is repaired"
                )
                return False
        journals = {
            m.group(1): data
            for key, data in records.items()
            if (m := _JOURNAL_KEY.fullmatch(key)) is not None
        }
        try:
            for failover_id, data in sorted(journals.items()):
                _write_atomic(self.journal.path(failover_id), data)
            if state is not None:
                _write_atomic(self.store.path, state)
        except OSError as exc:
            log.error(f"not taking over: cannot write the state dir: {exc}")
            return False
        self._ready_term = token
        self._committed_state = state
        log.warning(
            f"{self.name} took over: {STATE_KEY if state is not None else 'no state'} and "
            f"{len(journals)} journal(s) from etcd written to the state dir; an interrupted "
            "failover resumes now",
            fencing_token=token,
        )
        return True

    # -- committing the state ----------------------------------------------------------------

    async def _commit(self, failover_id: str | None) -> None:
        """One fenced write of the journal (when given) and the state file, read now: under
        the lock, so an older read never lands after a newer one. FenceRefused."""
        async with self._commit_lock:
            puts: dict[str, bytes] = {}
            if failover_id is not None:
                journal = _read(self.journal.path(failover_id))
                if journal is not None:
                    puts[journal_key(failover_id)] = journal
            state = _read(self.store.path)
            if state is not None:
                puts[STATE_KEY] = state
            if puts:
                await self.coordinator.fenced_write(puts)
                self._committed_state = state

    async def before_step(self, failover_id: str, index: int, phase: str) -> None:
        """The executor's gate: commit before the step starts, or raise Deposed."""
        where = f"stopped before {step_name(index, phase)} of {failover_id}"
        term = self._terms.get(failover_id)
        now = None if self.view is None else self.view.fencing_token
        if term is None or now != term:
            raise Deposed(where, f"{self.name} no longer leads in the term it started in")
        try:
            await self._commit(failover_id)
        except FenceRefused as exc:
            raise Deposed(where, str(exc)) from None

    async def sync_state(self) -> None:
        """After a cycle: the state file to etcd when it changed outside a failover (an ack,
        a rejoin checked, a role restored). Best effort: a refusal means another leads."""
        try:
            if not self.may_act or _read(self.store.path) in (None, self._committed_state):
                return
            await self._commit(None)
        except (FenceRefused, StateError) as exc:
            log.info(f"state not committed to etcd: {exc}")

    # -- running a failover ------------------------------------------------------------------

    async def take_requests(self) -> list[ForwardedRequest]:
        """Operators' requests other hosts put in etcd for the leader, taken now (none unless
        this instance may act)."""
        if not self.may_act:
            return []
        try:
            return await self.coordinator.take_requests()
        except EtcdUnavailable as exc:
            log.warning("could not read operators' requests from etcd", reason=str(exc))
            return []

    def serve_soon(self, request: ForwardedRequest, handle: RequestHandler) -> None:
        """Run a taken request in the background (`serve`); `close` waits for its last answers."""
        task = asyncio.get_running_loop().create_task(self.serve(request, handle))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def serve(self, request: ForwardedRequest, handle: RequestHandler) -> None:
        """Run a taken request through `handle` (the control socket's dispatch), its answers
        written to etcd in order as they come, then the end."""
        body = request.body or {}
        log.info(
            f"request from {request.asked_by} through etcd: {body.get('op')} "
            f"{body.get('broker_name') or ''}".rstrip(),
            request=request.request_id,
        )
        answers: asyncio.Queue[Mapping[str, Any] | None] = asyncio.Queue()
        writer = asyncio.get_running_loop().create_task(self._answer(request, answers))
        try:
            if request.error is not None:
                answers.put_nowait({"error": request.error})
            else:
                await handle(body, answers.put_nowait)
        finally:
            answers.put_nowait(None)
            await writer

    async def _answer(
        self, request: ForwardedRequest, answers: asyncio.Queue[Mapping[str, Any] | None]
    ) -> None:
        """Write a taken request's answers to etcd in order until None; the last one says
        the end. An asking command that has gone (its lease with it) gets no more, and what
        it asked for goes on."""
        seq, is_asker_gone = 1, False
        while True:
            message = await answers.get()
            if message is None:
                message = {"end": True}
            for attempt in range(5):
                if is_asker_gone:
                    break
                try:
                    await self.coordinator.reply(request, seq, message)
                    break
                except LeaseGone:
                    is_asker_gone = True
                    log.info(
                        "the command that asked through etcd has gone; not answering it",
                        request=request.request_id,
                        asked_by=request.asked_by,
                    )
                except EtcdUnavailable as exc:
                    if attempt == 4:
                        is_asker_gone = True
                        log.warning(
                            "cannot answer a request through etcd", reason=str(exc),
                            request=request.request_id,
                        )  # fmt: skip
                    else:
                        await asyncio.sleep(0.5)
            seq += 1
            if message.get("end"):
                return

    async def guard(
        self, plan: Plan, failover_id: str, run: Coroutine[Any, Any, FailoverResult]
    ) -> FailoverResult:
        """Run a failover under this term: gated steps, the lease watched while they run, its
        journal committed at the end. A deposed run returns the outcome "deposed"."""
        self._terms[failover_id] = self.term  # None: not acting, so the first gate refuses
        started = self.clock()
        task = asyncio.ensure_future(run)
        watch = asyncio.ensure_future(self._watch_lease(failover_id, task))
        try:
            result = await task
        except Deposed as exc:
            return self._deposed(plan, failover_id, exc.where, exc.why, started)
        except asyncio.CancelledError:
            why = self._lease_lost.pop(failover_id, None)
            if why is None:
                raise  # the daemon's own cancellation
            where = f"stopped during {self._running_steps(failover_id)} of {failover_id}"
            return self._deposed(plan, failover_id, where, why, started)
        finally:
            watch.cancel()
            self._terms.pop(failover_id, None)
        try:
            await self._commit(failover_id)
        except FenceRefused as exc:
            log.warning(
                f"the end of {failover_id} is not in etcd ({exc}): the next leader runs its "
                "last step again",
                failover_id=failover_id,
            )
        return result

    async def _watch_lease(self, failover_id: str, task: asyncio.Future[Any]) -> None:
        """Cancel the run once the lease is not known to live much longer: before any other
        instance can take the leader key, whatever the step in progress is doing."""
        while not task.done():
            left = self.coordinator.lease_left_seconds
            if not self._lease_holds():
                self._lease_lost[failover_id] = (
                    f"the lease of {self.name} is known to live {format_seconds(left)} more "
                    "(etcd not answering)"
                )
                task.cancel()
                return
            await asyncio.sleep(_LEASE_WATCH_SECONDS)

    def _running_steps(self, failover_id: str) -> str:
        started: dict[tuple[str, int], None] = {}
        with contextlib.suppress(OSError):
            for e in self.journal.read(failover_id):
                key = (str(e.get("phase", "main")), int(e.get("index", -1)))
                if e.get("event") == "step_started":
                    started[key] = None
                elif e.get("event") in ("step_done", "step_skipped", "step_failed"):
                    started.pop(key, None)
        return " and ".join(step_name(i, p) for p, i in started) or "a pause between steps"

    def _deposed(
        self, plan: Plan, failover_id: str, where: str, why: str, started: float
    ) -> FailoverResult:
        """Not finished: no outcome recorded, no rollback. The next takeover (of whoever
        leads) reads the journal back from etcd and goes on from there."""
        log.warning(
            f"deposed: {where}; the new leader resumes it",
            reason=why,
            failover_id=failover_id,
            broker_name=plan.broker_name,
        )
        self._ready_term = None  # even if the lead comes back: re-read etcd, resume from there
        with contextlib.suppress(OSError):
            self.journal.append(failover_id, "deposed", instance=self.name, detail=why)
        with contextlib.suppress(StateError):
            self.store.save(self.store.load().with_running(plan.broker_name, None))
        return FailoverResult(
            failover_id,
            plan.broker_name,
            plan.kind,
            "deposed",
            f"{where}: {why}",
            self.clock() - started,
            (),
        )
