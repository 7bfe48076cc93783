"""systemd's notify protocol (sd_notify): readiness, status, watchdog pings, reload and stop."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

__all__ = ["SystemdNotifier"]

_log = structlog.get_logger(__name__)

# systemd reads its notify socket promptly; a send that blocks longer than this means something
# is badly wrong, and the daemon's loop must not hang on it.
_SEND_TIMEOUT_SECONDS = 1.0


def _socket_address(value: str) -> str | None:
    """The AF_UNIX address NOTIFY_SOCKET names, or None if it is not one we can use.

    A leading "@" names a socket in the abstract namespace (its first byte is NUL on the wire);
    a leading "/" names a filesystem path. systemd ≥254 also allows "vsock:", which is not
    supported here.
    """
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """WATCHDOG_USEC in seconds, if the watchdog is enabled for this very process."""
    raw = environ.get("WATCHDOG_USEC")
    if raw is None:
        return None
    pid = environ.get("WATCHDOG_PID")
    # Like sd_watchdog_enabled(): WATCHDOG_PID set to another pid means the setting was
    # inherited from a parent and is not ours.
    if pid is not None and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(raw)
    except ValueError:
        _log.warning("ignoring WATCHDOG_USEC: not an integer", value=raw)
        return None
    if usec <= 0:
        _log.warning("ignoring WATCHDOG_USEC: not positive", value=raw)
        return None
    return usec / 1_000_000


@dataclass
class SystemdNotifier:
    """Sends sd_notify messages to the socket in NOTIFY_SOCKET; does nothing without one.

    A send failure is logged (once until a send works again) and otherwise ignored: the daemon
    keeps watching its cluster whether or not systemd hears about it.

        notifier = SystemdNotifier.from_environ()
        notifier.ready("watching 2 broker groups")
        if notifier.watchdog_interval_seconds:   # ping at least every half of it
            ...
    """

    address: str | None = None
    watchdog_interval_seconds: float | None = None
    _is_failing: bool = field(default=False, init=False, repr=False, compare=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET")
        address = None
        if raw:
            address = _socket_address(raw)
            if address is None:
                _log.warning(
                    "NOTIFY_SOCKET is neither a path nor an abstract @name; "
                    "systemd notifications disabled",
                    notify_socket=raw,
                )
        return cls(address=address, watchdog_interval_seconds=_watchdog_interval(env))

    @property
    def is_enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd start-up is finished (Type=notify units wait for this)."""
        return self._send("READY=1", status)

    def status(self, text: str) -> bool:
        """Set the one-line status `systemctl status` shows."""
        return self._send(None, text)

    def watchdog(self) -> bool:
        """Ping the service watchdog; send at least every half of watchdog_interval_seconds."""
        return self._send("WATCHDOG=1", None)

    def stopping(self, status: str | None = None) -> bool:
        return self._send("STOPPING=1", status)

    def reloading(self, status: str | None = None) -> bool:
        """Announce a reload; send ready() when it is done.

        systemd ≥253 (Type=notify-reload) expects MONOTONIC_USEC with RELOADING=1, the
        CLOCK_MONOTONIC time of the reload request, to tell this reload from an earlier one.
        """
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self._send(f"RELOADING=1\nMONOTONIC_USEC={now_usec}", status)

    def _send(self, fields: str | None, status: str | None) -> bool:
        """Send one datagram; True if it was sent, False if disabled or the send failed."""
        if self.address is None:
            return False
        lines = [] if fields is None else [fields]
        if status is not None:
            # The protocol is newline-separated assignments: a newline would end STATUS early.
            lines.append("STATUS=" + " ".join(status.splitlines()))
        message = "\n".join(lines).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(_SEND_TIMEOUT_SECONDS)
                sock.connect(self.address)
                sock.sendall(message)
        except OSError as exc:
            if not self._is_failing:
                self._is_failing = True
                _log.warning(
                    "cannot notify systemd; further failures are not logged until a send works",
                    notify_socket=self.address.replace("\0", "@"),
                    error=str(exc) or type(exc).__name__,
                )
            return False
        if self._is_failing:
            self._is_failing = False
            _log.info(
                "notifying systemd works again", notify_socket=self.address.replace("\0", "@")
            )
        return True
