"""The ACL account of a client child: handed over on its stdin, given to librocketmq's clients."""

# Not on the child's command line (any user's `ps` shows it) nor in its environment (inherited
# by whatever it starts, kept in /proc/PID/environ): one JSON line on stdin, read once.

from __future__ import annotations

import json
from typing import IO, Any

from ..model import AclCredentials, Secret

__all__ = ["ACL_CHANNEL", "CredentialsError", "credentials_line", "read_credentials", "sign_client"]

# The channel librocketmq signs along as OnsChannel (its own default value); an Apache broker
# signs it like any other field and otherwise ignores it.
ACL_CHANNEL = "ALIYUN"
_MAX_LINE_BYTES = 16 * 1024


class CredentialsError(ValueError):
    """The credentials line is not one this package writes; the message never quotes it."""


def credentials_line(credentials: AclCredentials) -> bytes:
    """What the parent writes to a child's stdin."""
    token = credentials.security_token
    doc = {
        "access_key": credentials.access_key,
        "secret_key": credentials.secret_key.reveal(),
        "security_token": None if token is None else token.reveal(),
    }
    return json.dumps(doc, separators=(",", ":")).encode("utf-8") + b"\n"


def read_credentials(stream: IO[str]) -> AclCredentials:
    """The account on the first line of ``stream``; CredentialsError when there is none."""
    line = stream.readline(_MAX_LINE_BYTES)
    try:
        doc = json.loads(line)
    except ValueError:
        raise CredentialsError("no credentials line on stdin") from None
    if not isinstance(doc, dict):
        raise CredentialsError("the credentials line is not a JSON object")
    access_key, secret_key = doc.get("access_key"), doc.get("secret_key")
    token = doc.get("security_token")
    if not isinstance(access_key, str) or not access_key or not isinstance(secret_key, str):
        raise CredentialsError("the credentials line lacks access_key or secret_key")
    if token is not None and not isinstance(token, str):
        raise CredentialsError("the credentials line's security_token is not a string")
    return AclCredentials(access_key, Secret(secret_key), None if token is None else Secret(token))


def sign_client(client: Any, credentials: AclCredentials | None) -> None:
    """Give a `rocketmq` Producer or PullConsumer the account (before its start()). librocketmq
    signs AccessKey, OnsChannel and the request's fields; it has no SecurityToken."""
    if credentials is not None:
        client.set_session_credentials(
            credentials.access_key, credentials.secret_key.reveal(), ACL_CHANNEL
        )
