"""Exceptions raised by the RocketMQ remoting client and its typed admin calls."""

# Exception hierarchy:
#
# RemotingError  (a WatchdogError, see watchdog/model/_errors.py)
#  ├── RemotingTimeout        no response within the request timeout
#  ├── RemotingConnectError   refused / unreachable / connect timeout
#  ├── RemotingClosed         connection lost while a request was in flight
#  ├── ProtocolError          garbage on the wire, or a body that makes no sense
#  └── RemoteError            the server answered with a non-zero code
#       └── AclRefused        a broker's ACL refused the request (its credentials, its rights)

from __future__ import annotations

import re

from ..model import WatchdogError

__all__ = [
    "describe_error",
    "RemotingError",
    "RemotingTimeout",
    "RemotingConnectError",
    "RemotingClosed",
    "ProtocolError",
    "RemoteError",
    "AclRefused",
    "acl_refusal",
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


class AclRefused(RemoteError):
    """A broker's ACL (aclEnable=true) refused the request before running it: no access key,
    an unknown one, a signature its secret key does not give, or no admin right.

    ``reason`` is the broker's own sentence, e.g. "Check signature failed for accessKey=X". The
    broker answered, so it is alive; what the request asked is unknown.
    """

    def __init__(self, code: int, remark: str | None, request_code: int) -> None:
        super().__init__(code, remark, request_code)
        self.reason = acl_refusal(code, remark) or "refused"
        self.args = (f"request code {request_code} refused by the broker's ACL: {self.reason}",)


_ACL_EXCEPTION = "org.apache.rocketmq.acl.common.AclException"
# RemotingHelper.exceptionSimpleDesc appends ", " and the top stack frame to the exception.
_STACK_FRAME = re.compile(r", [\w$.<>]+\([^()]*\)\s*$")


def acl_refusal(code: int, remark: str | None) -> str | None:
    """The reason a broker's ACL gave for refusing a request (e.g. "Check signature failed for
    accessKey=rmq-watchdog"), or None when a reply with this code and remark is no ACL refusal.

    A 4.x broker answers an AclException thrown by its ACL hook with code 1 (SYSTEM_ERROR) and
    the remark "org.apache.rocketmq.acl.common.AclException: <reason>, <top stack frame>"."""
    if code != 1 or not remark:
        return None
    text = remark.strip()
    if not text.startswith(_ACL_EXCEPTION):
        return None
    reason = _STACK_FRAME.sub("", text[len(_ACL_EXCEPTION) :]).lstrip(":").strip()
    return reason or "refused"


def describe_error(exc: BaseException) -> str:
    """One short phrase for an exception, as it appears in snapshots, reasons and status."""
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
