"""The in-place promotion plug-in's requests (codes 30900-30903): signing, sending, parsing."""

# The protocol is fixed on both ends (broker-plugin/README.md; the Java side is
# broker-plugin/src/main/java/io/rmqwatchdog/plugin/). Requests 30901-30903 carry
#   epoch, issuedAt (unix ms), nonce (>= 16 hex digits) and
#   mac = hex HMAC-SHA256(secret, "<code>\n" + "<key>=<value>\n" for every other field but
#         ACL's, keys sorted by their UTF-8 bytes).
# With [acl] the client signs every request after this (_acl.sign_command): it adds AccessKey
# (and SecurityToken) and a Signature over all the fields, the mac included, which the
# broker's ACL hook checks before the plug-in runs (4.9.7 asks no right of an unknown request
# code, only a known account and its signature). The mac cannot cover a Signature made after
# it, so both ends leave the three ACL fields out; the plug-in never acts on them.
# A reply is SUCCESS (0), PROMOTION_REFUSED (30950, field `refusal`), NO_PERMISSION (16),
# REQUEST_CODE_NOT_SUPPORTED (3: no plug-in) or SYSTEM_ERROR (1). A promotion can take seconds
# inside the broker (stopping the HA client, waiting up to 2 s for dispatch, a synchronous
# registration that waits up to 6 s for a dead nameserver): callers give it >= 15 s.

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ..model import MASTER_ROLES
from ._acl import ACCESS_KEY, SECURITY_TOKEN, SIGNATURE
from ._admin import Requester, ResponseCode, _java_long, _short
from ._codec import RemotingCommand
from ._errors import AclRefused, ProtocolError, RemoteError, RemotingError, acl_refusal

__all__ = [
    "PLUGIN_INFO",
    "PROMOTE_IN_PLACE",
    "SET_HA_MASTER",
    "SET_MASTER_ROLE",
    "PROMOTION_REFUSED",
    "REFUSALS",
    "PluginInfo",
    "Promotion",
    "PluginRefused",
    "PluginUnauthorized",
    "sign_request",
    "auth_fields",
    "parse_plugin_info",
    "parse_promotion",
    "get_plugin_info",
    "promote_in_place",
    "set_ha_master",
    "set_master_role",
]

PLUGIN_INFO = 30900
PROMOTE_IN_PLACE = 30901
SET_HA_MASTER = 30902
SET_MASTER_ROLE = 30903
PROMOTION_REFUSED = 30950

REFUSALS = frozenset(
    {"not_slave", "not_master", "epoch_not_newer", "log_moved", "partial_tail", "bad_request",
     "busy"}
)  # fmt: skip
_BROKER_ROLES = (*MASTER_ROLES, "SLAVE")
_HEX = frozenset("0123456789abcdefABCDEF")
_MIN_NONCE_CHARS = 16
_MAX_NONCE_CHARS = 128
_MAC_FIELD = "mac"
_UNSIGNED = frozenset({_MAC_FIELD, ACCESS_KEY, SECURITY_TOKEN, SIGNATURE})


@dataclass(frozen=True)
class PluginInfo:
    """PLUGIN_INFO: what the plug-in and its broker say about themselves."""

    plugin_version: str
    rocketmq_version: str
    broker_role: str  # ASYNC_MASTER | SYNC_MASTER | SLAVE
    broker_id: int
    last_epoch: int  # the last epoch it served, 0 if none
    max_phy_offset: int
    dispatch_behind_bytes: int
    ha_master_address: str  # "" if none
    has_secret: bool  # its secret file holds a usable secret now


@dataclass(frozen=True)
class Promotion:
    """A PROMOTE_IN_PLACE that succeeded: the broker is the master from promotion_point on."""

    promotion_point: int
    epoch: int
    broker_role: str


class PluginRefused(RemotingError):
    """The plug-in refused (30950): ``refusal`` is one of REFUSALS, the message has its remark.

    A refusal leaves the broker as it was (a promotion refused after replication was stopped
    has restarted replication before answering)."""

    def __init__(self, refusal: str, remark: str | None, request_code: int) -> None:
        self.refusal = refusal
        self.remark = remark
        self.request_code = request_code
        detail = f": {remark.strip()}" if remark else ""
        super().__init__(f"plug-in refused request {request_code} ({refusal}){detail}")

    def __reduce__(self) -> tuple[type[PluginRefused], tuple[str, str | None, int]]:
        return (type(self), (self.refusal, self.remark, self.request_code))


class PluginUnauthorized(RemotingError):
    """NO_PERMISSION (16): no secret loaded, bad mac, stale issuedAt or replayed nonce."""

    def __init__(self, remark: str | None, request_code: int) -> None:
        self.remark = remark
        self.request_code = request_code
        detail = f": {remark.strip()}" if remark else ""
        super().__init__(f"plug-in did not authenticate request {request_code}{detail}")

    def __reduce__(self) -> tuple[type[PluginUnauthorized], tuple[str | None, int]]:
        return (type(self), (self.remark, self.request_code))


# --- signing (pure) ---------------------------------------------------------------------------


def _canonical(code: int, fields: Mapping[str, str]) -> bytes:
    lines = [f"{code}\n".encode()]
    for key in sorted((k for k in fields if k not in _UNSIGNED), key=lambda k: k.encode("utf-8")):
        value = fields[key]
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"field {key!r}: keys and values are strings")
        # The plug-in refuses these: they would let two field sets share one canonical string.
        if not key or "=" in key or "\n" in key:
            raise ValueError(f"field name {key!r} must be non-empty, without '=' or line breaks")
        if "\n" in value:
            raise ValueError(f"field {key}: a value must not contain line breaks")
        lines.append(f"{key}={value}\n".encode())
    return b"".join(lines)


def sign_request(secret: bytes, code: int, fields: Mapping[str, str]) -> str:
    """The request's mac: lowercase hex HMAC-SHA256 over the canonical string of ``code`` and
    every field but ``mac`` and ACL's (AccessKey, SecurityToken, Signature)."""
    if not secret:
        raise ValueError("the plug-in secret is empty")
    return hmac.new(secret, _canonical(code, fields), hashlib.sha256).hexdigest()


def auth_fields(
    secret: bytes, code: int, fields: Mapping[str, str], *, now_ms: int, nonce: str
) -> dict[str, str]:
    """``fields`` (with their epoch) plus issuedAt, nonce and the mac over all of them."""
    if not _MIN_NONCE_CHARS <= len(nonce) <= _MAX_NONCE_CHARS or not _HEX.issuperset(nonce):
        raise ValueError(f"nonce must be 16 to 128 hex digits, got {_short(nonce)}")
    if now_ms < 0:
        raise ValueError(f"now_ms must be a unix time in milliseconds, got {now_ms}")
    signed = {**fields, "issuedAt": str(now_ms), "nonce": nonce}
    signed.pop(_MAC_FIELD, None)
    signed[_MAC_FIELD] = sign_request(secret, code, signed)
    return signed


def _signed(secret: bytes, code: int, fields: Mapping[str, str]) -> dict[str, str]:
    return auth_fields(
        secret, code, fields, now_ms=time.time_ns() // 1_000_000, nonce=secrets.token_hex(16)
    )


# --- replies (pure) ---------------------------------------------------------------------------


def _what(code: int) -> str:
    names = {
        PLUGIN_INFO: "PLUGIN_INFO",
        PROMOTE_IN_PLACE: "PROMOTE_IN_PLACE",
        SET_HA_MASTER: "SET_HA_MASTER",
        SET_MASTER_ROLE: "SET_MASTER_ROLE",
    }
    return names.get(code, str(code))


def _check(reply: RemotingCommand, code: int) -> RemotingCommand:
    """``reply`` if it is SUCCESS; the matching error otherwise."""
    if reply.code == ResponseCode.SUCCESS:
        return reply
    if reply.code == PROMOTION_REFUSED:
        refusal = reply.ext_fields.get("refusal")
        if refusal not in REFUSALS:
            raise ProtocolError(
                f"{_what(code)}: refusal reply with refusal={_short(refusal)}, not one of "
                f"{', '.join(sorted(REFUSALS))} (remark: {_short(reply.remark)})"
            )
        raise PluginRefused(refusal, reply.remark, code)
    if reply.code == ResponseCode.NO_PERMISSION:
        raise PluginUnauthorized(reply.remark, code)
    if acl_refusal(reply.code, reply.remark) is not None:
        # The broker's ACL refused the request before the plug-in saw it.
        raise AclRefused(reply.code, reply.remark, code)
    raise RemoteError(reply.code, reply.remark, code)


def _field(reply: RemotingCommand, name: str, code: int) -> str:
    value = reply.ext_fields.get(name)
    if value is None:
        raise ProtocolError(f"{_what(code)}: reply has no {name!r} field")
    return value


def _long(reply: RemotingCommand, name: str, code: int, *, signed: bool = False) -> int:
    value = _field(reply, name, code)
    number = _java_long(value, signed=signed)
    if number is None:
        kind = "an integer" if signed else "a non-negative integer"
        raise ProtocolError(f"{_what(code)}: {name}={_short(value)} is not {kind}")
    return number


def _role(reply: RemotingCommand, roles: tuple[str, ...], code: int) -> str:
    value = _field(reply, "brokerRole", code)
    if value not in roles:
        raise ProtocolError(
            f"{_what(code)}: brokerRole={_short(value)} is not one of {', '.join(sorted(roles))}"
        )
    return value


def parse_plugin_info(reply: RemotingCommand) -> PluginInfo | None:
    """A PLUGIN_INFO reply: None for REQUEST_CODE_NOT_SUPPORTED (no plug-in)."""
    if reply.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED:
        return None
    _check(reply, PLUGIN_INFO)
    has_secret = _field(reply, "secretLoaded", PLUGIN_INFO)
    if has_secret not in ("true", "false"):
        raise ProtocolError(f"PLUGIN_INFO: secretLoaded={_short(has_secret)} is not true/false")
    return PluginInfo(
        plugin_version=_field(reply, "pluginVersion", PLUGIN_INFO),
        rocketmq_version=_field(reply, "rocketmqVersion", PLUGIN_INFO),
        broker_role=_role(reply, _BROKER_ROLES, PLUGIN_INFO),
        broker_id=_long(reply, "brokerId", PLUGIN_INFO),
        last_epoch=_long(reply, "lastEpoch", PLUGIN_INFO),
        max_phy_offset=_long(reply, "maxPhyOffset", PLUGIN_INFO),
        dispatch_behind_bytes=_long(reply, "dispatchBehindBytes", PLUGIN_INFO, signed=True),
        ha_master_address=_field(reply, "haMasterAddress", PLUGIN_INFO),
        has_secret=has_secret == "true",
    )


def parse_promotion(reply: RemotingCommand) -> Promotion:
    """A PROMOTE_IN_PLACE reply: the Promotion, or PluginRefused / PluginUnauthorized /
    RemoteError / ProtocolError."""
    _check(reply, PROMOTE_IN_PLACE)
    return Promotion(
        promotion_point=_long(reply, "promotionPoint", PROMOTE_IN_PLACE),
        epoch=_long(reply, "epoch", PROMOTE_IN_PLACE),
        broker_role=_role(reply, MASTER_ROLES, PROMOTE_IN_PLACE),
    )


def _check_role(role: str) -> None:
    if role not in MASTER_ROLES:
        raise ValueError(f"role must be ASYNC_MASTER or SYNC_MASTER, not {role!r}")


def _check_epoch(epoch: int) -> None:
    if isinstance(epoch, bool) or not 0 <= epoch < 2**63:
        raise ValueError(f"epoch must be a non-negative 64-bit integer, not {epoch!r}")


# --- calls ------------------------------------------------------------------------------------


async def get_plugin_info(client: Requester, *, timeout_seconds: float) -> PluginInfo | None:
    """PLUGIN_INFO (no auth); None when the broker has no plug-in."""
    reply = await client.request(PLUGIN_INFO, timeout_seconds=timeout_seconds)
    return parse_plugin_info(reply)


async def promote_in_place(
    client: Requester,
    *,
    secret: bytes,
    role: str,
    expect_max_phy_offset: int,
    epoch: int,
    timeout_seconds: float,
) -> Promotion:
    """PROMOTE_IN_PLACE: turn the slave ``client`` talks to into the ``role`` master, if its log
    ends at ``expect_max_phy_offset`` on a message boundary and ``epoch`` is newer than any it
    served. Raises PluginRefused (nothing changed), PluginUnauthorized, RemoteError."""
    _check_role(role)
    _check_epoch(epoch)
    if isinstance(expect_max_phy_offset, bool) or not 0 <= expect_max_phy_offset < 2**63:
        raise ValueError(f"expect_max_phy_offset must be an offset, not {expect_max_phy_offset!r}")
    fields = {
        "role": role,
        "expectMaxPhyOffset": str(expect_max_phy_offset),
        "epoch": str(epoch),
    }
    reply = await client.request(
        PROMOTE_IN_PLACE,
        _signed(secret, PROMOTE_IN_PLACE, fields),
        timeout_seconds=timeout_seconds,
    )
    return parse_promotion(reply)


async def set_ha_master(
    client: Requester,
    *,
    secret: bytes,
    ha_master_address: str,
    master_address: str,
    epoch: int,
    timeout_seconds: float,
) -> None:
    """SET_HA_MASTER: re-point the slave's replication to ``ha_master_address`` (the master's
    HA port) and its offset/config sync to ``master_address``, without a restart."""
    _check_epoch(epoch)
    fields = {
        "haMasterAddress": ha_master_address,
        "masterAddress": master_address,
        "epoch": str(epoch),
    }
    reply = await client.request(
        SET_HA_MASTER, _signed(secret, SET_HA_MASTER, fields), timeout_seconds=timeout_seconds
    )
    _check(reply, SET_HA_MASTER)


async def set_master_role(
    client: Requester, *, secret: bytes, role: str, epoch: int, timeout_seconds: float
) -> None:
    """SET_MASTER_ROLE: switch a running master between ASYNC_MASTER and SYNC_MASTER."""
    _check_role(role)
    _check_epoch(epoch)
    fields = {"role": role, "epoch": str(epoch)}
    reply = await client.request(
        SET_MASTER_ROLE, _signed(secret, SET_MASTER_ROLE, fields), timeout_seconds=timeout_seconds
    )
    _check(reply, SET_MASTER_ROLE)
    _role(reply, MASTER_ROLES, SET_MASTER_ROLE)
