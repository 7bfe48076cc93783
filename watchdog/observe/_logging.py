"""Logging setup: one structlog processor chain for our events and for stdlib loggers alike."""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO, get_args

import structlog
from structlog.typing import Processor

__all__ = ["LogFormat", "configure_logging"]

LogFormat = Literal["auto", "json", "console"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class _WatchdogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one root handler configure_logging owns; found again by type to stay idempotent."""


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def _shared_chain(is_json: bool) -> list[Processor]:
    chain: list[Processor] = [
        # First, so per-cycle context (cluster, broker group, failover id) reaches every event.
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if is_json:
        # JSON needs the traceback as a string; ConsoleRenderer formats exc_info itself (and
        # warns if it has already been turned into text).
        chain.append(structlog.processors.format_exc_info)
    return chain


def configure_logging(
    fmt: LogFormat = "auto",
    level: str = "info",
    stream: TextIO | None = None,
) -> Literal["json", "console"]:
    """Route structlog and stdlib `logging` through one chain to `stream` (stdout if None).

    "auto" renders JSON lines unless `stream` is a terminal, where it renders for humans.
    Libraries logging through stdlib (asyncssh, httpx) come out in the same format. Calling
    this again replaces the previous setup instead of adding a second handler. Returns the
    format actually chosen.
    """
    if fmt not in get_args(LogFormat):
        raise ValueError(f"log format must be one of {get_args(LogFormat)}, not {fmt!r}")
    level_no = _LEVELS.get(level.lower()) if isinstance(level, str) else None
    if level_no is None:
        raise ValueError(f"log level must be one of {tuple(_LEVELS)}, not {level!r}")
    out = sys.stdout if stream is None else stream
    is_tty = _is_tty(out)
    chosen: Literal["json", "console"] = ("console" if is_tty else "json") if fmt == "auto" else fmt
    is_json = chosen == "json"
    shared = _shared_chain(is_json)
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if is_json
        else structlog.dev.ConsoleRenderer(colors=is_tty)
    )

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        # Not cached: a later configure_logging() must reach loggers created before it.
        cache_logger_on_first_use=False,
    )

    handler = _WatchdogHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _WatchdogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_no)
    # asyncssh logs ~5 INFO lines per SSH channel (opened, command, closed...): a failover's
    # steps over SSH would bury the decision lines. Its warnings and errors still come through.
    logging.getLogger("asyncssh").setLevel(max(level_no, logging.WARNING))
    return chosen
