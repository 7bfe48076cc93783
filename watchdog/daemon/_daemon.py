"""The daemon: a fixed-cadence loop of probe -> detect -> decide -> act, logged and exported."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import structlog
from prometheus_client import CollectorRegistry

from ..act import (
    Executor,
    FailoverResult,
    Journal,
    JournalProgress,
    StateStore,
    WatchdogState,
    follow_recorded_masters,
    manual_promote,
    new_failover_id,
    prepare_plan,
)
from ..config import ConfigError, WatchdogConfig, load_config
from ..decide import (
    Decision,
    Fence,
    NoAction,
    Plan,
    Policy,
    Promote,
    Refusal,
    decide,
    log_fields,
    rejoin_offset,
)
from ..detect import ClusterVerdict, DetectorState, detect
from ..hosts import Host, make_host
from ..model import ClusterSnapshot, GroupState
from ..observe import Decision as DecisionKind
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
from ._lock import DaemonLock

__all__ = ["Daemon", "control_socket_path"]

log = structlog.get_logger("rmq_watchdog")


def control_socket_path(config: WatchdogConfig) -> Path:
    return Path(config.state_dir) / "control.sock"


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
        notifier: SystemdNotifier | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        crash_after_step: int | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.notifier = notifier or SystemdNotifier.from_environ()
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
        self._stop = asyncio.Event()
        self._reload_requested = False
        self._is_ready = False
        self._group_states: dict[str, GroupState] = {}
        self._has_nameserver_majority = True
        self._build(config)

    def _build(self, config: WatchdogConfig) -> None:
        self.config = config
        self.notifier_webhooks = WebhookNotifier(config.notify.webhook)
        self.hosts: dict[str, Host] = {n: make_host(n, h) for n, h in config.hosts.items()}
        self.secondary = BackgroundSecondaryChecks(
            config,
            self.hosts,
            # Generous: detection itself ignores a result that began before the silence.
            max_age_seconds=config.detect.down_after_seconds
            + max((c.timeout_seconds for c in config.secondary_checks), default=0.0)
            + 2 * config.probe.interval_seconds,
            clock=self.clock,
        )
        self.prober = Prober(
            config,
            self.pool,
            secondary_runner=self.secondary,
            clock=self.clock,
            wall_clock=self.wall_clock,
        )
        self.executor = Executor(
            config,
            self.hosts,
            self.pool,
            self.store,
            self.journal,
            canary=_canary_runner(self.pool),
            notifier=self.notifier_webhooks,
            hooks=HookRunner(config.hooks),
            emit=self._on_failover_event,
            clock=self.clock,
            wall_clock=self.wall_clock,
            crash_after_step=self.crash_after_step,
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
            control = await self._start_control()
            log.info(
                "rmq-watchdog started",
                config=self.config_path,
                metrics=self.config.metrics.listen if self.config.metrics.enabled else None,
                dry_run=self.config.dry_run,
                groups=list(self.config.group_names()),
            )
            self.detector = follow_recorded_masters(
                self.detector, self.store.load(), self.journal, self.config
            )
            self._resume_interrupted()
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
            await self.secondary.close()
            await self.notifier_webhooks.aclose()
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

    def _reload(self) -> None:
        self._reload_requested = False
        self.notifier.reloading("reloading configuration")
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration", error=str(exc))
            self.notifier.ready("reload refused; running with the previous configuration")
            return
        if new.metrics != self.config.metrics or new.state_dir != self.config.state_dir:
            log.warning("metrics and state_dir changes take effect after a restart")
        loop = asyncio.get_running_loop()
        loop.create_task(self.secondary.close())
        loop.create_task(self.notifier_webhooks.aclose())
        self._build(new)
        log.info("configuration reloaded", config=self.config_path)
        self.notifier.ready("configuration reloaded")

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
        self.detector, verdict = detect(
            self.detector, snapshot, self.config.detect, self.config.probe
        )
        state = self.store.load()
        now_wall = self.wall_clock()
        running = {n for n, t in self.failovers.items() if not t.done()} | set(state.running)
        policy = Policy.from_config(
            self.config,
            blocked_until={
                n: r.blocked_until for n, r in state.groups.items() if r.blocked_until is not None
            },
            blocked_reason={n: r.block_reason for n, r in state.groups.items()},
            running=running,
            rejoin_checks={
                n: (r.rejoin_check_key, r.promotion_offset)
                for n, r in state.groups.items()
                if r.rejoin_check_key is not None and r.promotion_offset is not None
            },
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
        self._clear_clean_rejoins(snapshot, verdict, state)
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
            self.metrics.record_decision(decision.broker_name, cast(DecisionKind, decision.kind))
            if isinstance(decision, Promote | Fence) and not self.config.dry_run:
                self._start_failover(decision, snapshot)
        self._announce_nameserver_majority(verdict)
        self.metrics.update(snapshot, group_states, verdict.is_isolated)
        for name in group_states:
            record = state.group(name)
            self.metrics.set_blocked_until(
                name, record.blocked_until if record.is_blocked(now_wall) else None
            )
            self.metrics.set_role_lowered(name, record.lowered_from is not None)
        self.cycle = _Cycle(number, snapshot, verdict, decisions)
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
            self.notifier_webhooks.dispatch(
                Event(name, decision.broker_name, None, now_wall, decision.reason)
            )

    def _clear_restored_roles(self, verdict: ClusterVerdict, state: WatchdogState) -> None:
        """A master that answers with the role a failover lowered has it back: done."""
        for name, record in state.groups.items():
            g = verdict.group(name)
            if record.lowered_from and g is not None and g.master_role == record.lowered_from:
                log.info(
                    f"{name}'s master role is {record.lowered_from} again", broker_name=name
                )
                self.store.save(
                    self.store.load().with_group(
                        name, replace(record, lowered_from=None, lowered_by=None)
                    )
                )

    def _clear_clean_rejoins(
        self, snapshot: ClusterSnapshot, verdict: ClusterVerdict, state: WatchdogState
    ) -> None:
        """A deposed master seen back as a slave within the promotion point is a clean prefix
        of the new master's log: nothing more to check. It is judged by the log end it came
        back with, even if it came back while the failover still ran."""
        for name, record in state.groups.items():
            key, point = record.rejoin_check_key, record.promotion_offset
            g = verdict.group(name)
            if key is None or point is None or name in state.running or g is None:
                continue
            for obs in snapshot.group(name):
                offset = rejoin_offset(g, obs)
                is_clean = obs.key == key and obs.is_up and obs.role == "SLAVE"
                if is_clean and offset is not None and offset <= point:
                    log.info(
                        "deposed master rejoined within the promotion point",
                        broker_name=name,
                        broker=key,
                        offset=offset,
                        promotion_offset=point,
                    )
                    self.store.save(
                        self.store.load().with_group(name, replace(record, rejoin_check_key=None))
                    )

    # -- acting -----------------------------------------------------------------------------

    def _start_failover(self, decision: Promote | Fence, snapshot: ClusterSnapshot) -> None:
        name = decision.broker_name
        task = self.failovers.get(name)
        if task is not None and not task.done():
            return
        self.failovers[name] = asyncio.get_running_loop().create_task(
            self._plan_and_execute(decision, snapshot)
        )

    async def _plan_and_execute(
        self,
        decision: Promote | Fence,
        snapshot: ClusterSnapshot,
        progress: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> FailoverResult:
        failover_id = new_failover_id(decision.broker_name, self.wall_clock())
        with structlog.contextvars.bound_contextvars(
            failover_id=failover_id, broker_name=decision.broker_name
        ):
            plan, _files = await prepare_plan(
                decision, self.config, snapshot, self.hosts, self.store.load()
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
                self.metrics.record_failover(
                    decision.broker_name, "refused", 0.0, self.wall_clock()
                )
                return result
            return await self._execute(plan, failover_id)

    async def _execute(
        self, plan: Plan, failover_id: str, resume: JournalProgress | None = None
    ) -> FailoverResult:
        result = await self.executor.run(plan, failover_id, resume=resume)
        self._follow(plan, result)
        return result

    def _follow(self, plan: Plan, result: FailoverResult) -> None:
        """After a promotion, detection follows the new master at once; otherwise a returning
        old master answering first could be taken for the one to keep."""
        if plan.kind == "promote" and result.is_success and plan.new_master_addr:
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

    def _on_failover_event(self, event: str, fields: Mapping[str, Any]) -> None:
        failover_id = fields.get("failover_id")
        if event == "failover_started":
            plan: Plan = fields["plan"]
            log.warning(
                "fence started" if plan.kind == "fence" else "failover started",
                new_role=plan.new_role,
                role_lowered_from=plan.lowered_from,
                failover_id=failover_id,
                broker_name=plan.broker_name,
                reason=plan.reason,
                steps=len(plan.steps),
            )
        elif event in ("step_done", "step_skipped", "step_failed"):
            record = fields["record"]
            step = fields["step"]
            method = log.warning if record.status != "done" else log.info
            method(
                f"step {record.index + 1} {record.status}: {step.purpose}",
                failover_id=failover_id,
                phase=record.phase,
                step=record.kind,
                broker=record.broker_key,
                detail=record.detail,
                duration_seconds=round(record.duration_seconds, 3),
            )
        elif event == "rollback_started":
            log.error("rolling back", failover_id=failover_id, reason=fields.get("reason"))
        elif event == "store_moved_aside":
            log.warning(
                f"moved the deposed master's store aside: {fields.get('messages')} message(s), "
                f"{fields.get('bytes')} bytes past the promotion point, kept in "
                f"{fields.get('path')}",
                failover_id=failover_id,
                broker=fields.get("broker_key"),
                summary=fields.get("summary"),
            )
            self.metrics.record_moved_aside(
                str(fields.get("broker_name")), fields.get("bytes"), fields.get("messages")
            )
        elif event == "failover_finished":
            result: FailoverResult = fields["result"]
            method = log.warning if result.is_success else log.error
            noun = "fence" if result.kind == "fence" else "failover"
            method(
                f"{noun} {result.outcome}: {result.detail}",
                failover_id=failover_id,
                broker_name=result.broker_name,
                duration_seconds=round(result.duration_seconds, 3),
            )
            if result.kind == "fence":
                self.metrics.record_fence(result.broker_name, result.outcome)
            else:
                self.metrics.record_failover(
                    result.broker_name, result.outcome, result.duration_seconds, self.wall_clock()
                )
        listeners = getattr(self, "_listeners", {}).get(failover_id, ())
        for listener in listeners:
            listener({"event": event, **_jsonable(fields)})

    # -- control socket (one actor: `rmq-watchdog failover` asks the daemon) ----------------

    async def _start_control(self) -> asyncio.AbstractServer:
        path = control_socket_path(self.config)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        server = await asyncio.start_unix_server(self._serve_control, path=str(path))
        os.chmod(path, 0o600)
        return server

    async def _serve_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        def send(obj: Mapping[str, Any]) -> None:
            writer.write((json.dumps(obj, default=str) + "\n").encode())

        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            request = json.loads(line or b"{}")
            op = request.get("op")
            if op == "failover":
                await self._control_failover(request, send)
            elif op == "ack":
                send(self._ack(str(request.get("broker_name", ""))))
            else:
                send({"error": f"unknown op {op!r}"})
            await writer.drain()
        except (ValueError, TimeoutError, ConnectionError) as exc:
            with contextlib.suppress(ConnectionError):
                send({"error": f"bad request: {exc}"})
        finally:
            writer.close()

    def _ack(self, broker_name: str) -> dict[str, Any]:
        if broker_name not in self.config.group_names():
            return {"error": f"unknown broker group {broker_name!r}"}
        state = self.store.load()
        record = state.group(broker_name)
        from dataclasses import replace

        self.store.save(
            state.with_group(broker_name, replace(record, blocked_until=None, block_reason=""))
        )
        log.info("failover block acknowledged", broker_name=broker_name)
        return {"ok": True, "message": f"automatic failover of {broker_name} re-enabled"}

    async def _control_failover(
        self, request: Mapping[str, Any], send: Callable[[Mapping[str, Any]], None]
    ) -> None:
        name = str(request.get("broker_name", ""))
        if name not in self.config.group_names():
            send({"error": f"unknown broker group {name!r}"})
            return
        task = self.failovers.get(name)
        if task is not None and not task.done():
            send({"error": f"a failover of {name} is already running"})
            return
        cycle = self.cycle
        if cycle.snapshot is None or cycle.verdict is None:
            send({"error": "the daemon has not completed a probe cycle yet"})
            return
        group = next(g for g in cycle.verdict.groups if g.broker_name == name)
        to_key = request.get("to_key")
        force = bool(request.get("force"))
        if not group.is_odown and not force:
            send(
                {
                    "error": f"master of {name} is not objectively down ({group.state}); "
                    "use --force to fail over a live master"
                }
            )
            return
        record = self.store.load().group(name)
        if record.is_blocked(self.wall_clock()) and not force:
            # The same rule as a failover run without a daemon (manual.py).
            send(
                {
                    "error": f"failovers of {name} are blocked ({record.block_reason}); "
                    "`rmq-watchdog ack` or --force"
                }
            )
            return
        fenced_by_operator = bool(request.get("fenced_by_operator"))
        if fenced_by_operator:
            log.warning(
                "an operator confirmed the old master is fenced (--fenced-by-operator)",
                broker_name=name,
                old_master=group.master_key,
            )
        decision = manual_promote(
            cycle.snapshot,
            group,
            self.config,
            to_key=to_key,
            force=force,
            fenced_by_operator=fenced_by_operator,
        )
        if isinstance(decision, Refusal):
            send({"error": decision.reason})
            return
        plan, _ = await prepare_plan(
            decision, self.config, cycle.snapshot, self.hosts, self.store.load()
        )
        if isinstance(plan, Refusal):
            send({"error": plan.reason})
            return
        failover_id = new_failover_id(name, self.wall_clock())
        queue: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue()
        listeners: dict[str, list[Callable[[Mapping[str, Any]], None]]] = getattr(
            self, "_listeners", {}
        )
        self._listeners = listeners
        listeners[failover_id] = [queue.put_nowait]
        send({"event": "accepted", "failover_id": failover_id, "plan": plan.to_json()})
        task = asyncio.get_running_loop().create_task(self._execute(plan, failover_id))
        self.failovers[name] = task
        while True:
            get = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({get, task}, return_when=asyncio.FIRST_COMPLETED)
            if get in done:
                send(get.result())
                continue
            get.cancel()
            while not queue.empty():
                send(queue.get_nowait())
            break
        listeners.pop(failover_id, None)
        result = task.result()
        send({"event": "result", "outcome": result.outcome, "detail": result.detail})


def _jsonable(fields: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if hasattr(value, "to_json"):
            out[key] = value.to_json()
        elif hasattr(value, "__dataclass_fields__"):
            from dataclasses import asdict

            out[key] = asdict(value)
        else:
            out[key] = value
    return out


def _canary_runner(pool: ClientPool) -> Any:
    async def run(namesrvs: Any, addr: str, name: str, topic: str, timeout: float) -> Any:
        from ..canary import run_canary

        return await run_canary(
            list(namesrvs), addr, name, topic=topic, timeout_seconds=timeout, pool=pool
        )

    return run
