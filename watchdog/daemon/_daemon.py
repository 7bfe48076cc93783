"""The daemon: a fixed-cadence loop of probe -> detect -> decide -> act, logged and exported."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from ..act import (
    CanaryRunner,
    Executor,
    FailoverResult,
    Journal,
    JournalProgress,
    StateStore,
    WatchdogState,
    new_failover_id,
    prepare_plan,
    prepare_switchover,
    recorded_masters,
    role_restores,
)
from ..config import ConfigError, WatchdogConfig, load_config
from ..coord import Coordinator
from ..decide import (
    RESTORE_RETRY_SECONDS,
    Decision,
    Fence,
    NoAction,
    Plan,
    Policy,
    Promote,
    Refusal,
    RestoreRole,
    clean_rejoins,
    decide,
    decide_switchover,
    is_switchover,
    log_fields,
    manual_promote,
    operator_refusal,
    restore_log_fields,
)
from ..detect import ClusterVerdict, DetectorState, detect
from ..hosts import Host, make_host
from ..model import ClusterSnapshot, GroupState
from ..observe import (
    Event,
    EventName,
    HookRunner,
    MetricsServer,
    SystemdNotifier,
    WatchdogMetrics,
    WebhookNotifier,
)
from ..probe import BackgroundSecondaryChecks, Prober, client_pool
from ..remoting import ClientPool
from ._control import (
    FailoverRequest,
    Send,
    SwitchoverRequest,
    acknowledge,
    answer_request,
    control_socket_path,
    event_message,
    relay_failover,
    start_control_server,
)
from ._events import log_failover_event
from ._ha import CoordinatorLike, HaCoordination, own_group_views
from ._lock import DaemonLock
from ._seams import (
    ExecutorFactory,
    FailoverEvents,
    FailoverRunner,
    ServiceNotifier,
    SnapshotSource,
)

__all__ = [
    "Daemon",
    "ExecutorFactory",
    "FailoverEvents",
    "FailoverRunner",
    "ServiceNotifier",
    "SnapshotSource",
    "canary_runner",
]

log = structlog.get_logger("rmq_watchdog")


@dataclass(frozen=True)
class _Given:
    """What the caller handed in; a reload keeps these and rebuilds the rest."""

    prober: SnapshotSource | None = None
    hosts: Mapping[str, Host] | None = None
    webhooks: WebhookNotifier | None = None
    hooks: HookRunner | None = None
    executor: ExecutorFactory | None = None


@dataclass
class _Cycle:
    number: int = 0
    snapshot: ClusterSnapshot | None = None
    verdict: ClusterVerdict | None = None
    decisions: tuple[Decision, ...] = ()


# A 2,000-broker cycle allocates a few hundred thousand short-lived containers (replies,
# observations, verdicts); at the default threshold of 700 the cyclic collector ran ~100 ms a
# cycle, mostly re-walking long-lived objects. Almost all of this garbage is freed by reference
# counting anyway, so collecting less often costs little memory.
_GC_THRESHOLDS = (20_000, 10, 10)


@contextlib.contextmanager
def _gc_tuned_for_cycles() -> Iterator[None]:
    """Freeze what startup built (config, pools, modules) out of the collector's walks, and
    collect young objects less often; the previous settings come back on exit."""
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


class Daemon:
    def __init__(
        self,
        config_path: str,
        config: WatchdogConfig,
        *,
        prober: SnapshotSource | None = None,
        notifier: ServiceNotifier | None = None,
        webhooks: WebhookNotifier | None = None,
        hooks: HookRunner | None = None,
        hosts: Mapping[str, Host] | None = None,
        executor: ExecutorFactory | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        crash_after_step: int | None = None,
        coordinator: CoordinatorLike | None = None,
    ) -> None:
        """Each of `prober`, `notifier`, `webhooks`, `hooks`, `hosts` and `executor` left out
        is built from the configuration (and rebuilt on reload); one handed in is kept.
        The webhook notifier and hook runner go to the real executor, which takes them as
        they are; their own seams are the httpx transport and the configured argv. With
        [etcd] (or a `coordinator` handed in) it is one of several instances (_ha.py)."""
        self.config_path = config_path
        self.config = config
        self.notifier: ServiceNotifier = notifier or SystemdNotifier.from_environ()
        self._given = _Given(prober, hosts, webhooks, hooks, executor)
        self.metrics = WatchdogMetrics(registry or CollectorRegistry())
        self.metrics_server = MetricsServer(self.metrics.registry)
        self.clock = clock
        self.wall_clock = wall_clock
        self.crash_after_step = crash_after_step
        self.pool = client_pool(config)
        self.lock = DaemonLock(config.state_dir)
        self.store = StateStore(config.state_dir)
        self.journal = Journal(config.state_dir, clock=wall_clock)
        self.detector = DetectorState.initial()
        self.cycle = _Cycle()
        self.failovers: dict[str, asyncio.Task[FailoverResult]] = {}
        self._restore_retry_at: dict[str, float] = {}  # group -> wall time (role restores)
        # failover id -> where its events go: the control-socket client that asked for it
        self._listeners: dict[str, Send] = {}
        # failover ids of the planned switchovers running: counted apart from failovers
        self._switchovers: set[str] = set()
        self._stop = asyncio.Event()
        self._reload_requested = False
        self._is_ready = False
        self._group_states: dict[str, GroupState] = {}
        self._has_nameserver_majority = True
        self.ha: HaCoordination | None = None
        if coordinator is not None or config.etcd is not None:
            coord = coordinator or Coordinator.from_config(config)
            self.ha = HaCoordination(
                coord, config, self.store, self.journal, self.metrics, clock=clock
            )
        self._build(config)

    def _build(self, config: WatchdogConfig) -> None:
        given = self._given
        self.config = config
        self.pool.set_credentials(config.acl_credentials())  # a reload's [acl] signs from now on
        self.webhooks = given.webhooks or WebhookNotifier(config.notify.webhook)
        self.hosts: Mapping[str, Host] = (
            given.hosts
            if given.hosts is not None
            else {n: make_host(n, h) for n, h in config.hosts.items()}
        )
        self.secondary = BackgroundSecondaryChecks(
            config,
            self.hosts,
            # Generous: detection itself ignores a result that began before the silence.
            max_age_seconds=config.detect.down_after_seconds
            + max((c.timeout_seconds for c in config.secondary_checks), default=0.0)
            + 2 * config.probe.interval_seconds,
            clock=self.clock,
        )
        self.prober: SnapshotSource = given.prober or Prober(
            config,
            self.pool,
            secondary_runner=self.secondary,
            clock=self.clock,
            wall_clock=self.wall_clock,
        )
        make_executor = given.executor or self._real_executor
        self.executor = make_executor(config, self.hosts, self._on_failover_event)

    def _real_executor(
        self, config: WatchdogConfig, hosts: Mapping[str, Host], emit: FailoverEvents
    ) -> Executor:
        return Executor(
            config,
            hosts,
            self.pool,
            self.store,
            self.journal,
            canary=canary_runner(self.pool),
            notifier=self.webhooks,
            hooks=self._given.hooks or HookRunner(config.hooks),
            emit=emit,
            clock=self.clock,
            wall_clock=self.wall_clock,
            crash_after_step=self.crash_after_step,
            before_step=None if self.ha is None else self.ha.before_step,
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> int:
        self.lock.acquire()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        control: asyncio.AbstractServer | None = None
        structlog.contextvars.bind_contextvars(cluster=self.config.cluster_name)
        try:
            if self.config.metrics.enabled:
                self.metrics_server.start(self.config.metrics.listen)
            control = await start_control_server(
                control_socket_path(self.config),
                self._control_failover,
                self._control_ack,
                self._control_status,
                self._control_switchover,
            )
            log.info(
                "rmq-watchdog started",
                config=self.config_path,
                metrics=self.config.metrics.listen if self.config.metrics.enabled else None,
                dry_run=self.config.dry_run,
                groups=list(self.config.group_names()),
            )
            self._follow_recorded()
            if self.ha is None:
                self.metrics.update_coordination(is_leader=True)
                self._resume_interrupted()
            else:  # resumed after its takeover, from etcd's journals, once leading
                await self.ha.start()
            with _gc_tuned_for_cycles():
                await self._loop()
        finally:
            self.notifier.stopping("stopping")
            if control is not None:
                control.close()
                with contextlib.suppress(OSError):
                    control_socket_path(self.config).unlink()
            for task in self.failovers.values():
                if not task.done():
                    log.warning("waiting for a running failover to finish before exit")
            await asyncio.gather(*self.failovers.values(), return_exceptions=True)
            if self.ha is not None:
                await self.ha.close()  # hands the lead over at once
            await self.secondary.close()
            await self.webhooks.aclose()
            await self.pool.close_all()
            for host in self.hosts.values():
                await host.close()
            self.metrics_server.stop()
            self.lock.release()
            log.info("rmq-watchdog stopped")
        return 0

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload_requested = True

    async def _loop(self) -> None:
        interval = self.config.probe.interval_seconds
        next_run = self.clock()
        while not self._stop.is_set():
            if self._reload_requested:
                self._reload()
                interval = self.config.probe.interval_seconds
            started = self.clock()
            await self.run_cycle()
            elapsed = self.clock() - started
            next_run += interval
            overrun = self.clock() > next_run
            self.metrics.record_cycle(self.wall_clock(), is_overrun=overrun)
            if overrun:
                log.warning(
                    "cycle overran its interval",
                    cycle=self.cycle.number,
                    elapsed_seconds=round(elapsed, 3),
                    interval_seconds=interval,
                )
                next_run = self.clock()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(next_run - self.clock(), 0))

    # -- one cycle --------------------------------------------------------------------------

    async def run_cycle(self) -> _Cycle:
        number = self.cycle.number + 1
        budget = self.config.probe.interval_seconds + self.config.probe.timeout_seconds
        try:
            snapshot = await asyncio.wait_for(
                self.prober.snapshot(self.detector.known_master), budget
            )
        except TimeoutError:
            log.warning("probe did not finish in time; cycle skipped", cycle=number)
            return self.cycle
        for ns in snapshot.nameservers:
            if ns.latency_seconds is not None:
                self.metrics.observe_probe("namesrv", ns.latency_seconds)
        for b in snapshot.brokers:
            if b.latency_seconds is not None:
                self.metrics.observe_probe("broker", b.latency_seconds)
        if self.ha is not None:  # the other instances' views, as secondary observations
            others = self.ha.extra_observations(self.wall_clock())
            snapshot = replace(snapshot, secondary=snapshot.secondary + others)
        self.detector, verdict = detect(
            self.detector, snapshot, self.config.detect, self.config.probe
        )
        if self.ha is not None and await self.ha.cycle(
            own_group_views(snapshot, verdict), now_wall=self.wall_clock(), is_busy=self._busy()
        ):
            self._follow_recorded()
            self._resume_interrupted()
        state = self.store.load()
        now_wall = self.wall_clock()
        running = {n for n, t in self.failovers.items() if not t.done()} | set(state.running)
        rejoin_checks = {
            n: (r.rejoin_check_key, r.promotion_offset)
            for n, r in state.groups.items()
            if r.rejoin_check_key is not None and r.promotion_offset is not None
        }
        policy = Policy.from_config(
            self.config,
            blocked_until={
                n: r.blocked_until for n, r in state.groups.items() if r.blocked_until is not None
            },
            blocked_reason={n: r.block_reason for n, r in state.groups.items()},
            running=running,
            rejoin_checks=rejoin_checks,
            fence_retry_at={
                n: r.fence_retry_at for n, r in state.groups.items() if r.fence_retry_at
            },
            fence_wait_reason={n: r.fence_wait_reason for n, r in state.groups.items()},
            lowered={
                n: (r.lowered_from, r.lowered_by or "?")
                for n, r in state.groups.items()
                if r.lowered_from
            },
        )
        self._forget_clean_rejoins(snapshot, verdict, state, rejoin_checks)
        self._clear_restored_roles(verdict, state)
        decisions = decide(snapshot, verdict, self.config.brokers, policy, now_wall)
        group_states: dict[str, GroupState] = {}
        # Bound once per cycle: the lazy proxy re-binds on every call, a line per group.
        cycle_log = log.bind()
        master_roles = {g.broker_name: g.master_role for g in verdict.groups}
        for decision in decisions:
            group_states[decision.broker_name] = decision.state
            self._announce_transition(decision, now_wall)
            fields = log_fields(decision)
            event = str(fields.pop("event"))
            if self.config.dry_run and not isinstance(decision, NoAction):
                event = f"dry run, would act: {event}"
            elif self.ha is not None:
                event = self.ha.label(decision, event)
            # A group that needs a failover the watchdog will not do now is an operator's
            # business: blocked (anti-flap, no candidate, failover off) or awaiting its fence.
            emit = (
                cycle_log.warning
                if decision.state in (GroupState.FAILOVER_BLOCKED, GroupState.AWAITING_FENCE)
                else cycle_log.info
            )
            emit(
                event,
                cycle=number,
                master_role=master_roles.get(decision.broker_name),
                **fields,
            )
            self.metrics.record_decision(decision.broker_name, decision.kind)
            may_act = not self.config.dry_run and (self.ha is None or self.ha.may_act)
            if isinstance(decision, Promote | Fence) and may_act:
                self._start_failover(decision, snapshot)
        may_act = not self.config.dry_run and (self.ha is None or self.ha.may_act)
        for restore in await role_restores(
            self.config, self.pool, snapshot, self.cycle.snapshot, verdict, policy, state,
            now=now_wall, retry_at=self._restore_retry_at,
        ):  # fmt: skip
            fields = restore_log_fields(restore)
            event = str(fields.pop("event"))
            cycle_log.warning(event if may_act else f"would act: {event}", cycle=number, **fields)
            if may_act:
                self._restore_retry_at[restore.broker_name] = now_wall + RESTORE_RETRY_SECONDS
                self._start_failover(restore, snapshot)
        self._announce_nameserver_majority(verdict)
        self.metrics.update(snapshot, group_states, verdict.is_isolated)
        for name in group_states:
            record = state.group(name)
            self.metrics.set_blocked_until(
                name, record.blocked_until if record.is_blocked(now_wall) else None
            )
            self.metrics.set_role_lowered(name, record.lowered_from is not None)
        self.cycle = _Cycle(number, snapshot, verdict, decisions)
        if self.ha is not None:
            await self.ha.sync_state()
            for request in await self.ha.take_requests():
                self.ha.serve_soon(request, self._control_request)
        summary = ", ".join(f"{n} {s}" for n, s in group_states.items())
        if not self._is_ready:
            self._is_ready = True
            self.notifier.ready(f"cycle {number}: {summary}")
        else:
            self.notifier.status(f"cycle {number}: {summary}")
        self.notifier.watchdog()
        return self.cycle

    def _announce_nameserver_majority(self, verdict: ClusterVerdict) -> None:
        """One warning when most nameservers stop answering, one line when they are back."""
        up, total = verdict.nameservers_up, verdict.nameservers_total
        has_majority = up * 2 >= total  # "most are down" only when more than half are
        if has_majority == self._has_nameserver_majority:
            return
        self._has_nameserver_majority = has_majority
        if has_majority:
            log.info(f"a majority of nameservers answers again ({up}/{total})")
        else:
            log.warning(
                f"only {up}/{total} nameservers answer: clients get no routes from the others "
                "and no promotion could be verified on a majority"
            )

    def _announce_transition(self, decision: Decision, now_wall: float) -> None:
        """Webhook events for a group entering MASTER_ODOWN or FAILOVER_BLOCKED (once each)."""
        previous = self._group_states.get(decision.broker_name)
        self._group_states[decision.broker_name] = decision.state
        if previous == decision.state:
            return
        names: dict[GroupState, EventName] = {
            GroupState.MASTER_ODOWN: "master_down",
            GroupState.FAILOVER_BLOCKED: "failover_blocked",
        }
        name = names.get(decision.state)
        if name is not None:
            self.webhooks.dispatch(
                Event(name, decision.broker_name, None, now_wall, decision.reason)
            )

    def _clear_restored_roles(self, verdict: ClusterVerdict, state: WatchdogState) -> None:
        """A master that answers with the role a failover lowered has it back: done."""
        for name, record in state.groups.items():
            g = verdict.group(name)
            if record.lowered_from and g is not None and g.master_role == record.lowered_from:
                log.info(f"{name}'s master role is {record.lowered_from} again", broker_name=name)
                self.store.save(
                    self.store.load().with_group(
                        name, replace(record, lowered_from=None, lowered_by=None)
                    )
                )

    def _forget_clean_rejoins(
        self,
        snapshot: ClusterSnapshot,
        verdict: ClusterVerdict,
        state: WatchdogState,
        rejoin_checks: Mapping[str, tuple[str, int]],
    ) -> None:
        """A deposed master back within the promotion point needs no more checking."""
        for rejoin in clean_rejoins(snapshot, verdict, rejoin_checks, state.running):
            name = rejoin.broker_name
            log.info(
                "deposed master rejoined within the promotion point",
                broker_name=name,
                broker=rejoin.broker_key,
                offset=rejoin.offset,
                promotion_offset=rejoin.promotion_offset,
            )
            record = replace(state.group(name), rejoin_check_key=None)
            self.store.save(self.store.load().with_group(name, record))

    # -- reload (SIGHUP) --------------------------------------------------------------------

    def _reload(self) -> None:
        self._reload_requested = False
        self.notifier.reloading("reloading configuration")
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration", error=str(exc))
            self.notifier.ready("reload refused; running with the previous configuration")
            return
        restart_only = ("metrics", "state_dir", "etcd", "instance_name")
        if any(getattr(new, k) != getattr(self.config, k) for k in restart_only):
            log.warning("metrics, state_dir, etcd and instance_name changes need a restart")
        loop = asyncio.get_running_loop()
        loop.create_task(self.secondary.close())
        if self._given.webhooks is None:  # one handed in is kept, so stays open
            loop.create_task(self.webhooks.aclose())
        self._build(new)
        log.info("configuration reloaded", config=self.config_path)
        self.notifier.ready("configuration reloaded")

    # -- acting -----------------------------------------------------------------------------

    def _start_failover(
        self, decision: Promote | Fence | RestoreRole, snapshot: ClusterSnapshot
    ) -> None:
        name = decision.broker_name
        task = self.failovers.get(name)
        if task is not None and not task.done():
            return
        self.failovers[name] = asyncio.get_running_loop().create_task(
            self._plan_and_execute(decision, snapshot)
        )

    async def _plan_and_execute(
        self,
        decision: Promote | Fence | RestoreRole,
        snapshot: ClusterSnapshot,
        progress: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> FailoverResult:
        failover_id = new_failover_id(decision.broker_name, self.wall_clock())
        with structlog.contextvars.bound_contextvars(
            failover_id=failover_id, broker_name=decision.broker_name
        ):
            plan, _files = await prepare_plan(
                decision, self.config, snapshot, self.hosts, self.store.load(), pool=self.pool
            )
            if isinstance(plan, Refusal):
                log.error("failover refused", reason=plan.reason)
                result = FailoverResult(
                    failover_id,
                    decision.broker_name,
                    decision.kind,
                    "refused",
                    plan.reason,
                    0.0,
                    (),
                )
                if not isinstance(decision, RestoreRole):
                    self.metrics.record_failover(
                        decision.broker_name, "refused", 0.0, self.wall_clock()
                    )
                return result
            return await self._execute(plan, failover_id)

    async def _execute(
        self, plan: Plan, failover_id: str, resume: JournalProgress | None = None
    ) -> FailoverResult:
        if is_switchover(plan):
            self._switchovers.add(failover_id)
        try:
            run = self.executor.run(plan, failover_id, resume=resume)
            result = await (run if self.ha is None else self.ha.guard(plan, failover_id, run))
        finally:
            self._switchovers.discard(failover_id)
        self._follow(plan, result)
        return result

    def _busy(self) -> bool:
        return any(not task.done() for task in self.failovers.values())

    def _follow_recorded(self) -> None:
        """A new process (or a new leader) follows the masters earlier failovers promoted."""
        recorded = recorded_masters(self.store.load(), self.journal, self.config)
        for name, master in recorded.items():
            self.detector = self.detector.with_master(name, master.addr, master.role)
            if isinstance(self.prober, Prober):
                self.prober.forget_config(master.addr)

    def _follow(self, plan: Plan, result: FailoverResult) -> None:
        """After a promotion, detection follows the new master at once; otherwise a returning
        old master answering first could be taken for the one to keep."""
        restored = plan.kind == "restore_role" and result.is_success and plan.new_master_addr
        if restored and isinstance(self.prober, Prober):  # a new role, the same bootTimestamp
            self.prober.forget_config(plan.new_master_addr or "")
        if plan.kind == "promote" and result.is_success and plan.new_master_addr:
            if isinstance(self.prober, Prober):
                # Promoted in place, it kept its bootTimestamp: the prober's cached config
                # would show it as the slave it was for up to 30 cycles.
                self.prober.forget_config(plan.new_master_addr)
            self.detector = self.detector.with_master(
                plan.broker_name, plan.new_master_addr, plan.new_role or "ASYNC_MASTER"
            )

    def _resume_interrupted(self) -> None:
        state = self.store.load()
        for name, failover_id in state.running.items():
            try:
                progress = self.journal.progress(failover_id)
            except (OSError, ValueError) as exc:
                log.error(
                    "cannot resume interrupted failover; clearing it",
                    failover_id=failover_id,
                    broker_name=name,
                    error=str(exc),
                )
                self.store.save(self.store.load().with_running(name, None))
                continue
            if progress.is_finished:
                self.store.save(self.store.load().with_running(name, None))
                continue
            log.warning(
                "resuming interrupted failover",
                failover_id=failover_id,
                broker_name=name,
                done_steps=sorted(progress.done_steps),
            )
            self.failovers[name] = asyncio.get_running_loop().create_task(
                self._execute(progress.plan, failover_id, resume=progress)
            )

    # -- requests from the control socket (one actor: the CLI asks the daemon) --------------

    def _control_refusal(self, name: str) -> str | None:
        """Why the daemon takes no failover or switchover of `name` now (None: it may)."""
        task = self.failovers.get(name)
        if name not in self.config.group_names():
            return f"unknown broker group {name!r}"
        if self.ha is not None and (refusal := self.ha.refusal()) is not None:
            return refusal
        if task is not None and not task.done():
            return f"a failover of {name} is already running"
        if self.cycle.snapshot is None or self.cycle.verdict is None:
            return "the daemon has not completed a probe cycle yet"
        return None

    async def _control_failover(self, request: FailoverRequest, send: Send) -> None:
        name = request.broker_name
        if (refused := self._control_refusal(name)) is not None:
            send({"error": refused})
            return
        cycle = self.cycle
        assert cycle.snapshot is not None and cycle.verdict is not None
        group = next(g for g in cycle.verdict.groups if g.broker_name == name)
        record = self.store.load().group(name)
        refusal = operator_refusal(
            group,
            record.blocked_until,
            record.block_reason,
            force=request.force,
            now=self.wall_clock(),
        )
        if refusal is not None:
            send({"error": refusal})
            return
        if request.fenced_by_operator:
            log.warning(
                "an operator confirmed the old master is fenced (--fenced-by-operator)",
                broker_name=name,
                old_master=group.master_key,
            )
        decision = manual_promote(
            cycle.snapshot,
            group,
            self.config,
            to_key=request.to_key,
            force=request.force,
            now=self.wall_clock(),
            fenced_by_operator=request.fenced_by_operator,
        )
        if isinstance(decision, Refusal):
            send({"error": decision.reason})
            return
        plan, _ = await prepare_plan(
            decision, self.config, cycle.snapshot, self.hosts, self.store.load(), pool=self.pool
        )
        await self._run_requested(plan, send)

    async def _control_switchover(self, request: SwitchoverRequest, send: Send) -> None:
        """A planned switchover (decide/_switchover.py), planned on the last cycle's view and
        run as a failover is: journaled, resumed after a crash, one per group at a time."""
        refused = self._control_refusal(request.broker_name)
        cycle = self.cycle
        if refused is not None or cycle.snapshot is None or cycle.verdict is None:
            send({"error": refused})
            return
        group = next(g for g in cycle.verdict.groups if g.broker_name == request.broker_name)
        decision = decide_switchover(
            cycle.snapshot, group, self.config, to_key=request.to_key, now=self.wall_clock()
        )
        if isinstance(decision, Refusal):
            send({"error": decision.reason})
            return
        plan, _ = await prepare_switchover(
            decision, self.config, self.hosts, self.store.load(), self.pool,
            catch_up_timeout_seconds=request.catch_up_timeout_seconds,
        )  # fmt: skip
        await self._run_requested(plan, send)

    async def _run_requested(self, plan: Plan | Refusal, send: Send) -> None:
        """Run a plan a control-socket client asked for, its events relayed to it."""
        if isinstance(plan, Refusal):
            send({"error": plan.reason})
            return
        name = plan.broker_name
        failover_id = new_failover_id(name, self.wall_clock())
        events: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue()
        self._listeners[failover_id] = events.put_nowait
        try:
            send({"event": "accepted", "failover_id": failover_id, "plan": plan.to_json()})
            task = asyncio.get_running_loop().create_task(self._execute(plan, failover_id))
            self.failovers[name] = task
            await relay_failover(events, task, send)
        finally:
            self._listeners.pop(failover_id, None)

    async def _control_request(self, body: Mapping[str, Any], send: Send) -> None:
        """A request an operator put in etcd from another host, run as a control-socket one."""
        await answer_request(
            body, send, self._control_failover, self._control_ack,
            self._control_status, self._control_switchover,
        )  # fmt: skip

    def _control_ack(self, broker_name: str) -> Mapping[str, Any]:
        if self.ha is not None and (refusal := self.ha.refusal()) is not None:
            return {"error": refusal}  # the leader's state is the one that counts
        answer = acknowledge(self.config, self.store, broker_name)
        if answer.get("ok"):
            log.info("failover block acknowledged", broker_name=broker_name)
        return answer

    def _control_status(self) -> Mapping[str, Any]:
        """What `status` shows of the daemon: each group's state and sentence this cycle."""
        groups = {
            d.broker_name: {"state": d.state.value, "reason": d.reason}
            for d in self.cycle.decisions
        }
        return {"ok": True, "pid": os.getpid(), "cycle": self.cycle.number, "groups": groups}

    # -- failover events -> logs, metrics and the asking client -----------------------------

    def _on_failover_event(self, event: str, fields: Mapping[str, Any]) -> None:
        failover_id = str(fields.get("failover_id") or "")
        log_failover_event(
            event,
            fields,
            self.metrics,
            self.wall_clock(),
            is_planned_switch=failover_id in self._switchovers,
            journal=self.journal,
        )
        listener = self._listeners.get(failover_id)
        if listener is not None:
            listener(event_message(event, fields))


def canary_runner(pool: ClientPool) -> CanaryRunner:
    """The executor's canary step, run over the daemon's connection pool (and its client child
    signing with the pool's ACL account)."""

    async def run(namesrvs: Sequence[str], addr: str, name: str, topic: str, timeout: float) -> Any:
        from ..act import run_canary

        return await run_canary(
            list(namesrvs), addr, name, topic=topic, timeout_seconds=timeout, pool=pool,
            credentials=pool.credentials,
        )  # fmt: skip

    return run
