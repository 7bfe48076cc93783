"""The [notify] webhooks and the [hooks] argv lists, and the event names they take."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, field_validator

from ._base import PositiveSeconds, Strict

__all__ = [
    "EVENT_NAMES",
    "EventName",
    "HookName",
    "HooksConfig",
    "NotifyConfig",
    "WebhookConfig",
    "safe_url",
]


EventName = Literal[
    "failover_started",
    "failover_step",
    "failover_succeeded",
    "failover_failed",
    "failover_blocked",
    "master_down",
    "fenced",
    "awaiting_fence",
    # A planned switchover's events (`rmq-watchdog switchover`), in place of failover_*.
    "switchover_started",
    "switchover_step",
    "switchover_succeeded",
    "switchover_failed",
    "switchover_blocked",
]
EVENT_NAMES: tuple[EventName, ...] = get_args(EventName)
# One message per step: sent only to a webhook that lists them.
_STEP_EVENTS = frozenset({"failover_step", "switchover_step"})
HookName = Literal["pre_failover", "post_failover", "on_failure"]


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class WebhookConfig(Strict):
    """One `[[notify.webhook]]` receiver:

        [[notify.webhook]]
        url = "https://chat.example/hooks/rmq"
        headers = { Authorization = "Bearer ..." }
        events = ["failover_succeeded", "failover_failed"]  # default: all but the *_step ones
        format = "json"        # or "alertmanager": POST to http://am:9093/api/v2/alerts
        timeout = "5s"         # per attempt
        retries = 3            # after the first attempt, with exponential backoff
    """

    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    events: tuple[EventName, ...] = Field(
        tuple(e for e in EVENT_NAMES if e not in _STEP_EVENTS),
        min_length=1,
        description="events sent to this receiver; failover_step and switchover_step are one "
        "message per step",
    )
    format: Literal["json", "alertmanager"] = "json"
    timeout_seconds: PositiveSeconds = Field(5.0, alias="timeout")
    retries: int = Field(3, ge=0, le=10)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{safe_url(value)!r} is not an http:// or https:// URL")
        return value

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            if any(c in text for c in "\r\n\0"):
                raise ValueError(f"header {name}: value must not contain line breaks or NUL")
        return value


class NotifyConfig(Strict):
    """The `[notify]` table."""

    webhook: tuple[WebhookConfig, ...] = ()


def _argv(value: Any) -> Any:
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("a hook is a non-empty argv list, e.g. ['/usr/local/bin/x', '--y']")
        if any(isinstance(a, str) and "\0" in a for a in value):
            raise ValueError("a hook argument must not contain NUL")
        if isinstance(value[0], str) and not value[0].strip():
            raise ValueError("a hook's program (argv[0]) must not be empty")
    elif isinstance(value, str):
        raise ValueError("a hook is an argv list, not a string: no shell runs it")
    return value


_Argv = Annotated[tuple[str, ...], BeforeValidator(_argv)]


class HooksConfig(Strict):
    """The `[hooks]` table: argv lists run on the watchdog's host, never through a shell.

        [hooks]
        pre_failover = ["/usr/local/bin/ask-change-board"]  # non-zero exit or timeout = veto
        post_failover = ["/usr/local/bin/repoint-monitoring"]
        on_failure = ["/usr/local/bin/page-oncall"]
        timeout = "30s"

    The argv is run exactly as written: nothing from the event is substituted into it, so no
    event text can become an argument, an option or shell syntax. The event reaches the hook
    only through RMQ_WATCHDOG_* environment variables (see `hook_environment`).
    """

    pre_failover: _Argv | None = Field(
        None, description="runs before a failover; non-zero exit or timeout vetoes it"
    )
    post_failover: _Argv | None = Field(None, description="runs after a successful failover")
    on_failure: _Argv | None = Field(None, description="runs after a failed failover")
    timeout_seconds: PositiveSeconds = Field(30.0, alias="timeout")


def safe_url(url: str) -> str:
    """scheme://host:port/path: the query and user info often carry tokens, so never log them."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable url>"
    return f"{parts.scheme}://{host}{port}{parts.path}"
