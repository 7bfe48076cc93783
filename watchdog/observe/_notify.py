"""Failover notifications: webhooks and operator hooks, never in a failover's way."""

from __future__ import annotations

import asyncio
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any, get_args

import httpx
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from ..config import EVENT_NAMES, EventName, HookName, HooksConfig, NotifyConfig, WebhookConfig
from ..config import safe_url as _safe_url
from ..hosts import kill_process_group

__all__ = [
    "EVENT_NAMES",
    "Delivery",
    "Event",
    "EventName",
    "HookName",
    "HookResult",
    "HookRunner",
    "HooksConfig",
    "NotifyConfig",
    "WebhookConfig",
    "WebhookNotifier",
    "alertmanager_payload",
    "hook_environment",
    "json_payload",
    "switchover_event_name",
]

_log = structlog.get_logger(__name__)

_HOOK_NAMES: tuple[str, ...] = get_args(HookName)

# Severity an Alertmanager receiver routes on: someone must act / look / nothing to do.
_SEVERITY = {
    "failover_started": "warning",
    "failover_step": "info",
    "failover_succeeded": "warning",
    "failover_failed": "critical",
    "failover_blocked": "critical",
    "master_down": "critical",
    "fenced": "warning",
    "awaiting_fence": "critical",
    # An operator's planned switch: only its failure leaves something to do.
    "switchover_started": "info",
    "switchover_step": "info",
    "switchover_succeeded": "info",
    "switchover_failed": "critical",
    "switchover_blocked": "warning",  # refused or vetoed: nothing changed
}

# A planned switchover's events (decide's is_switchover) under names of their own, so a
# receiver or route that pages on failover_* is not paged by a maintenance switch.
_SWITCHOVER_NAMES: Mapping[str, EventName] = MappingProxyType(
    {
        "failover_started": "switchover_started",
        "failover_step": "switchover_step",
        "failover_succeeded": "switchover_succeeded",
        "failover_failed": "switchover_failed",
        "failover_blocked": "switchover_blocked",
    }
)


def switchover_event_name(name: EventName) -> EventName:
    """The name a planned switchover's event carries in place of failover `name`."""
    return _SWITCHOVER_NAMES.get(name, name)


# Hook output kept for logs and results; a chatty hook must not fill the daemon's memory.
_MAX_OUTPUT_BYTES = 64 * 1024
# After SIGKILL a process is gone within milliseconds; this only bounds a pathological wait.
_REAP_TIMEOUT_SECONDS = 5.0


# --- events and payloads ---------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """Something a failover or the detector wants people to know; `at` is Unix seconds."""

    name: EventName
    broker_name: str
    failover_id: str | None
    at: float
    summary: str
    steps: tuple[Mapping[str, Any], ...] = ()
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.name not in EVENT_NAMES:
            raise ValueError(f"event name must be one of {EVENT_NAMES}, not {self.name!r}")
        if not isinstance(self.at, int | float) or not math.isfinite(self.at):
            raise ValueError(f"event time must be Unix seconds, not {self.at!r}")
        # Own copies, read-only: the caller's dicts may change after the event is dispatched.
        object.__setattr__(
            self, "steps", tuple(MappingProxyType(dict(s)) for s in self.steps)
        )
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))


def _jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-ready copy: what JSON cannot hold (objects, NaN, cycles, deep nesting) becomes
    its str(), so a payload can always be written and every receiver can parse it."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= 16:
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, depth + 1) for v in value]
    return str(value)


def json_payload(event: Event) -> dict[str, Any]:
    """The `format = "json"` body."""
    return {
        "event": event.name,
        "broker_name": event.broker_name,
        "failover_id": event.failover_id,
        "at": event.at,
        "summary": event.summary,
        "steps": [_jsonable(s) for s in event.steps],
        "details": _jsonable(event.details),
    }


def _rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def _alertname(event_name: str) -> str:
    return "RmqWatchdog" + "".join(part.capitalize() for part in event_name.split("_"))


def _describe_step(step: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in step.items())


def alertmanager_payload(event: Event) -> list[dict[str, Any]]:
    """The `format = "alertmanager"` body: Alertmanager API v2 `postableAlerts` (POST it to
    /api/v2/alerts). No endsAt: Alertmanager resolves the event after its resolve_timeout."""
    labels = {
        "alertname": _alertname(event.name),
        "broker_name": event.broker_name,
        "severity": _SEVERITY[event.name],
        "event": event.name,
    }
    if event.failover_id:
        # One alert per failover, not one merged alert for every failover of the group.
        labels["failover_id"] = event.failover_id
    lines = [event.summary]
    lines += [f"- {_describe_step(s)}" for s in event.steps]
    lines += [f"{k}: {v}" for k, v in event.details.items()]
    return [
        {
            "labels": labels,
            "annotations": {"summary": event.summary, "description": "\n".join(lines)},
            "startsAt": _rfc3339(event.at),
        }
    ]


# --- webhooks --------------------------------------------------------------------------------


class _Retryable(Exception):
    """A failed attempt worth repeating: no connection, a timeout, HTTP 5xx/408/425/429."""


class _Permanent(Exception):
    """A failed attempt that would fail the same way again, such as HTTP 400 or 404."""


_RETRY_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Delivery:
    """How sending one event to one webhook ended."""

    url: str  # without query or user info
    event: str
    is_ok: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None


class WebhookNotifier:
    """Delivers events to the configured webhooks, in the background, with bounded retries.

    Fire-and-forget: `dispatch()` schedules the delivery as a task and returns at once, so a
    slow or dead receiver never delays a failover; `send()` is the awaitable delivery itself,
    and never raises.

        notifier = WebhookNotifier(config.notify.webhook)
        notifier.dispatch(event)          # returns at once; delivery runs as a task
        ...
        await notifier.aclose()           # at shutdown: let pending deliveries finish, briefly

    Each delivery is tried 1 + `retries` times with exponential backoff between attempts
    (`backoff_base_seconds` doubling up to `backoff_max_seconds`), and the whole delivery is
    cut off after `max_delivery_seconds` whatever is left. One webhook gets its events in the
    order they were dispatched (a receiver reads a failover's steps in order, the outcome last):
    a delivery to it waits for the one before; different webhooks do not wait for each other.
    """

    def __init__(
        self,
        webhooks: Sequence[WebhookConfig],
        *,
        backoff_base_seconds: float = 0.5,
        backoff_max_seconds: float = 8.0,
        max_delivery_seconds: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._webhooks = tuple(webhooks)
        self._backoff_base = backoff_base_seconds
        self._backoff_max = backoff_max_seconds
        self._max_delivery = max_delivery_seconds
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._pending: set[asyncio.Task[tuple[Delivery, ...]]] = set()
        self._is_closed = False
        # asyncio.Lock wakes its waiters first come, first served: deliveries to one webhook
        # take it in the order dispatch() created them.
        self._in_order = [asyncio.Lock() for _ in self._webhooks]

    @property
    def pending(self) -> int:
        """Deliveries dispatched and not finished yet."""
        return len(self._pending)

    def receivers(self, event_name: str) -> tuple[WebhookConfig, ...]:
        return tuple(w for w in self._webhooks if event_name in w.events)

    def dispatch(self, event: Event) -> asyncio.Task[tuple[Delivery, ...]] | None:
        """Schedule `send(event)` in the background and return at once (None: nobody listens).

        Must be called from the running event loop. The task is kept until it ends, so it is
        not garbage-collected mid-delivery; `aclose()` waits for it.
        """
        if self._is_closed:
            _log.warning("webhook notifier closed; event not sent", notify_event=event.name)
            return None
        if not self.receivers(event.name):
            return None
        task = asyncio.get_running_loop().create_task(
            self.send(event), name=f"webhook {event.name} {event.broker_name}"
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def send(self, event: Event) -> tuple[Delivery, ...]:
        """Deliver `event` to every webhook that wants it, concurrently; never raises."""
        receivers = self.receivers(event.name)
        if not receivers:
            return ()
        results = await asyncio.gather(
            *(self._deliver(w, event) for w in receivers), return_exceptions=True
        )
        deliveries = []
        for hook, result in zip(receivers, results, strict=True):
            if isinstance(result, Delivery):
                deliveries.append(result)
            elif isinstance(result, asyncio.CancelledError):
                raise result
            else:  # a bug in this module; still not the caller's problem
                _log.error("webhook delivery crashed", url=_safe_url(hook.url), error=repr(result))
                deliveries.append(Delivery(_safe_url(hook.url), event.name, False, 0,
                                           error=f"internal error: {result!r}"))
        return tuple(deliveries)

    async def aclose(self, timeout_seconds: float = 10.0) -> None:
        """Stop accepting events, wait up to `timeout_seconds` for pending deliveries, cancel
        what is left, and close the HTTP client."""
        self._is_closed = True
        pending = set(self._pending)
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout_seconds)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=_REAP_TIMEOUT_SECONDS)
                _log.warning("webhook deliveries abandoned at shutdown", count=len(still))
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # No redirects: a 3xx to elsewhere must not receive the configured headers.
            self._client = httpx.AsyncClient(transport=self._transport, follow_redirects=False)
        return self._client

    async def _deliver(self, hook: WebhookConfig, event: Event) -> Delivery:
        async with self._in_order[self._webhooks.index(hook)]:
            return await self._deliver_now(hook, event)

    async def _deliver_now(self, hook: WebhookConfig, event: Event) -> Delivery:
        url = _safe_url(hook.url)
        payload: Any = (
            alertmanager_payload(event) if hook.format == "alertmanager" else json_payload(event)
        )
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", **hook.headers}
        attempts = 0
        status: int | None = None

        async def attempt_once() -> None:
            nonlocal attempts, status
            attempts += 1
            try:
                response = await self._http().post(
                    hook.url, content=body, headers=headers,
                    timeout=httpx.Timeout(hook.timeout_seconds),
                )
            except httpx.TransportError as exc:  # connect, timeout, protocol: try again
                raise _Retryable(f"{type(exc).__name__}: {exc}" if str(exc) else
                                 type(exc).__name__) from None
            except httpx.HTTPError as exc:
                raise _Permanent(f"{type(exc).__name__}: {exc}") from None
            status = response.status_code
            if response.is_success:
                return
            if status >= 500 or status in _RETRY_STATUS:
                raise _Retryable(f"HTTP {status}")
            raise _Permanent(f"HTTP {status}")

        retrying = AsyncRetrying(
            stop=stop_after_attempt(hook.retries + 1),
            wait=wait_exponential(
                multiplier=self._backoff_base, min=self._backoff_base, max=self._backoff_max
            ),
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            async with asyncio.timeout(self._max_delivery):
                async for attempt in retrying:
                    with attempt:
                        await attempt_once()
        except (_Retryable, _Permanent) as exc:
            error = str(exc)
        except TimeoutError:
            error = f"gave up after {self._max_delivery:g} s"
        else:
            _log.info("webhook delivered", url=url, notify_event=event.name, attempts=attempts)
            return Delivery(url, event.name, True, attempts, status)
        _log.warning(
            "webhook delivery failed", url=url, notify_event=event.name, attempts=attempts,
            error=error,
        )
        return Delivery(url, event.name, False, attempts, status, error)


# --- hooks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HookResult:
    """How one hook run ended. `is_veto` is only ever true for pre_failover."""

    hook: HookName
    argv: tuple[str, ...]
    is_configured: bool
    exit_code: int | None = None  # None: not configured, could not start, or killed on timeout
    is_timed_out: bool = False
    error: str | None = None  # why it could not start
    output: str = ""  # stdout and stderr, interleaved, at most 64 KiB
    duration_seconds: float = 0.0

    @property
    def is_ok(self) -> bool:
        return not self.is_configured or self.exit_code == 0

    @property
    def is_veto(self) -> bool:
        return self.hook == "pre_failover" and not self.is_ok

    @property
    def reason(self) -> str:
        """One sentence for logs and decisions, e.g. "pre_failover hook exited 3: not now"."""
        if not self.is_configured:
            return f"no {self.hook} hook configured"
        if self.error is not None:
            return f"{self.hook} hook could not start: {self.error}"
        if self.is_timed_out:
            return f"{self.hook} hook timed out after {self.duration_seconds:.1f} s and was killed"
        tail = self.output.strip().splitlines()[-1:] or [""]
        said = f": {tail[0][:200]}" if tail[0] else ""
        if self.exit_code == 0:
            return f"{self.hook} hook succeeded{said}"
        return f"{self.hook} hook exited {self.exit_code}{said}"


def _env_safe(text: str) -> str:
    # The environment cannot hold NUL, and must be encodable: garbage in an event must not
    # stop a hook from running.
    return text.replace("\0", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def hook_environment(hook: HookName, event: Event) -> dict[str, str]:
    """The RMQ_WATCHDOG_* variables a hook sees (on top of the daemon's own environment)."""
    return {
        "RMQ_WATCHDOG_HOOK": hook,
        "RMQ_WATCHDOG_EVENT": event.name,
        "RMQ_WATCHDOG_BROKER_NAME": _env_safe(event.broker_name),
        "RMQ_WATCHDOG_FAILOVER_ID": _env_safe(event.failover_id or ""),
        "RMQ_WATCHDOG_AT": f"{event.at:.3f}",
        "RMQ_WATCHDOG_SUMMARY": _env_safe(event.summary),
        "RMQ_WATCHDOG_EVENT_JSON": _env_safe(json.dumps(json_payload(event), ensure_ascii=False)),
    }


def _read_output(fh: IO[bytes]) -> str:
    fh.seek(0)
    data = fh.read(_MAX_OUTPUT_BYTES + 1)
    text = data[:_MAX_OUTPUT_BYTES].decode(errors="replace")
    return text + ("\n[output truncated]" if len(data) > _MAX_OUTPUT_BYTES else "")


class HookRunner:
    """Runs the configured hooks: argv exactly as configured, no shell, event in the environment.

        result = await HookRunner(config.hooks).run("pre_failover", event)
        if result.is_veto:
            ...   # result.reason says why, e.g. "pre_failover hook timed out after 30.0 s ..."

    The hook's output goes to an unnamed temporary file, not a pipe, so a grandchild that keeps
    stdout open cannot make the watchdog wait; on timeout the whole process group is killed.
    """

    def __init__(self, config: HooksConfig, base_environ: Mapping[str, str] | None = None) -> None:
        self._config = config
        self._base_environ = base_environ

    def argv(self, hook: HookName) -> tuple[str, ...] | None:
        if hook not in _HOOK_NAMES:
            raise ValueError(f"hook must be one of {_HOOK_NAMES}, not {hook!r}")
        value: tuple[str, ...] | None = getattr(self._config, hook)
        return value

    async def run(self, hook: HookName, event: Event) -> HookResult:
        """Run one hook for `event`; never raises (a hook that cannot start is a result)."""
        argv = self.argv(hook)
        if argv is None:
            return HookResult(hook, (), is_configured=False)
        base = os.environ if self._base_environ is None else self._base_environ
        env = {k: v for k, v in base.items() if not k.startswith("RMQ_WATCHDOG_")}
        env.update(hook_environment(hook, event))
        timeout = self._config.timeout_seconds
        started = time.monotonic()
        with tempfile.TemporaryFile() as out:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            except (OSError, ValueError) as exc:
                error = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                result = HookResult(hook, argv, True, error=f"{argv[0]}: {error}",
                                    duration_seconds=time.monotonic() - started)
                _log.warning("hook could not start", hook=hook, reason=result.reason)
                return result
            is_timed_out = False
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                is_timed_out = True
                kill_process_group(proc.pid)  # its own session: a script's children die too
                try:
                    await asyncio.wait_for(proc.wait(), _REAP_TIMEOUT_SECONDS)
                except TimeoutError:
                    _log.error("hook did not die after SIGKILL", hook=hook, pid=proc.pid)
            except asyncio.CancelledError:
                kill_process_group(proc.pid)
                raise
            finally:
                # Children the hook left behind in its session are not ours to keep running.
                kill_process_group(proc.pid)
            output = _read_output(out)
        result = HookResult(
            hook,
            argv,
            True,
            exit_code=None if is_timed_out else proc.returncode,
            is_timed_out=is_timed_out,
            output=output,
            duration_seconds=time.monotonic() - started,
        )
        log = _log.info if result.is_ok else _log.warning
        log("hook ran", hook=hook, reason=result.reason, seconds=round(result.duration_seconds, 3))
        return result
