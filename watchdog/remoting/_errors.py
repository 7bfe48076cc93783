"""Exceptions raised by the RocketMQ remoting client and its typed admin calls."""

# Exception hierarchy:
#
# RemotingError  (a WatchdogError, see watchdog/model/_errors.py)
#  ├── RemotingTimeout        no response within the request timeout
#  ├── RemotingConnectError   refused / unreachable / connect timeout
#  ├── RemotingClosed         connection lost while a request was in flight
#  ├── ProtocolError          garbage on the wire, or a body that makes no sense
#  └── RemoteError            the server answered with a non-zero code

from __future__ import annotations

from ..model import WatchdogError

__all__ = [
    "describe_error",
    "RemotingError",
    "RemotingTimeout",
    "RemotingConnectError",
    "RemotingClosed",
    "ProtocolError",
    "RemoteError",
]


class RemotingError(WatchdogError):
    """Base class: any failure to get a usable answer from a RocketMQ server."""


class RemotingTimeout(RemotingError):
    """No response arrived within the request timeout (a reply arriving later is dropped)."""


class RemotingConnectError(RemotingError):
    """The TCP connection could not be made: refused, unreachable, or it took too long.

    `errno` is the connect's error number (ECONNREFUSED: nothing listens there), None for a
    timeout.
    """

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class RemotingClosed(RemotingError):
    """The connection was lost (or closed by us) while a request was waiting for its reply."""


class ProtocolError(RemotingError):
    """Bytes that are not a RocketMQ frame, or a reply whose body is not what the call expects."""


class RemoteError(RemotingError):
    """The server answered, but with a non-zero response code.

    ``code`` is the response code, ``remark`` the server's free-text reason (often None),
    ``request_code`` the code of the request that failed.
    """

    def __init__(self, code: int, remark: str | None, request_code: int) -> None:
        self.code = code
        self.remark = remark
        self.request_code = request_code
        detail = f": {remark.strip()}" if remark else ""
        super().__init__(f"request code {request_code} answered with code {code}{detail}")

    def __reduce__(self) -> tuple[type[RemoteError], tuple[int, str | None, int]]:
        # Keeps the exception picklable although __init__ takes three arguments.
        return (type(self), (self.code, self.remark, self.request_code))


def describe_error(exc: BaseException) -> str:
    """One short phrase for an exception, as it appears in snapshots, reasons and status."""
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
