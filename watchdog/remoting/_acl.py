"""RocketMQ ACL 1.0 on the wire: requests signed as AclClientRPCHook signs them, refusals read."""

# What 4.9.7 does (acl module: AclClientRPCHook, AclUtils, AclSigner, PlainAccessValidator,
# PlainPermissionManager; read at tag rocketmq-all-4.9.7):
# - the client adds AccessKey (and SecurityToken when it has one) to the request's ext fields,
#   then Signature = base64(HmacSHA1(secretKey, content)), where content is the UTF-8 bytes of
#   every ext field's value but Signature's, in the order of the keys sorted as Java Strings
#   (a TreeMap: UTF-16 code units), followed by the body. The request code, opaque and the other
#   header fields are not signed, so a bare request's signature depends on the account alone.
# - a broker with aclEnable=true checks every request in an RPC hook before the request's
#   processor runs: global white addresses, then the access key, the account's white address,
#   the signature, and the admin flag for the admin request codes (UPDATE_AND_CREATE_TOPIC,
#   UPDATE_BROKER_CONFIG, DELETE_TOPIC_IN_BROKER, UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
#   DELETE_SUBSCRIPTIONGROUP). A refusal is an AclException thrown from the hook, which the
#   remoting layer answers as code 1 (SYSTEM_ERROR) with the remark
#   "org.apache.rocketmq.acl.common.AclException: <reason>, <top stack frame>".
# - the nameservers of 4.x check nothing; signed requests to them are answered as usual.

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType

from ..model import AclCredentials, Secret
from ._admin import RequestCode, Requester
from ._codec import RemotingCommand
from ._errors import AclRefused, acl_refusal

__all__ = [
    "ACCESS_KEY",
    "SECURITY_TOKEN",
    "SIGNATURE",
    "acl_signature",
    "ask_admin_permission",
    "sign_command",
]

ACCESS_KEY = "AccessKey"
SECURITY_TOKEN = "SecurityToken"
SIGNATURE = "Signature"


def _java_order(key: str) -> bytes:
    # Java compares Strings by UTF-16 code units; big-endian UTF-16 bytes sort the same way
    # (Python's own str order, by code point, differs above U+FFFF).
    return key.encode("utf-16-be", "surrogatepass")


def acl_signature(fields: Mapping[str, str], body: bytes, secret_key: Secret) -> str:
    """The Signature ACL 1.0 computes for a request with these ext fields and body."""
    values = "".join(fields[k] for k in sorted(fields, key=_java_order) if k != SIGNATURE)
    # String.getBytes(UTF_8) writes '?' for what UTF-8 cannot encode (a lone surrogate).
    content = values.encode("utf-8", "replace") + body
    mac = hmac.new(secret_key.reveal().encode("utf-8", "replace"), content, hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def sign_command(cmd: RemotingCommand, credentials: AclCredentials) -> RemotingCommand:
    """``cmd`` with AccessKey, SecurityToken (if any) and its Signature among its ext fields."""
    if not cmd.ext_fields and not cmd.body:
        return _signed_bare(cmd, credentials)
    return _signed(cmd, credentials)


def _signed(cmd: RemotingCommand, credentials: AclCredentials) -> RemotingCommand:
    fields = dict(cmd.ext_fields)
    fields[ACCESS_KEY] = credentials.access_key
    if credentials.security_token is not None:
        fields[SECURITY_TOKEN] = credentials.security_token.reveal()
    fields[SIGNATURE] = acl_signature(fields, cmd.body, credentials.secret_key)
    return replace(cmd, ext_fields=MappingProxyType(fields))


@functools.lru_cache(maxsize=64)
def _signed_bare(cmd: RemotingCommand, credentials: AclCredentials) -> RemotingCommand:
    # A probe cycle sends thousands of requests without fields or body (runtime info, broker
    # config): their signature is the same every time, so it is computed once.
    return _signed(cmd, credentials)


async def ask_admin_permission(client: Requester, *, timeout_seconds: float) -> None:
    """Whether the broker lets this client's account run admin requests (the canary's topic
    creation is one), asked without changing anything; AclRefused when it does not.

    The request is UPDATE_AND_CREATE_TOPIC with a blank topic name: the ACL hook checks the
    admin flag before the request reaches its processor, and the processor then refuses a
    blank name (a slave refuses any creation) before it touches its topic table.
    """
    reply = await client.request(
        RequestCode.UPDATE_AND_CREATE_TOPIC,
        {
            "topic": "",
            "defaultTopic": "TBW102",
            "readQueueNums": "1",
            "writeQueueNums": "1",
            "perm": "6",
            "topicFilterType": "SINGLE_TAG",
            "topicSysFlag": "0",
            "order": "false",
        },
        timeout_seconds=timeout_seconds,
    )
    if acl_refusal(reply.code, reply.remark) is not None:
        raise AclRefused(reply.code, reply.remark, int(RequestCode.UPDATE_AND_CREATE_TOPIC))
