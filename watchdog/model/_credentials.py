"""Credentials as values: a secret that never shows itself, and RocketMQ ACL 1.0's key pair."""

# Why a class of our own and not a str: a str finds its way into a log line, an f-string in an
# exception, a repr in a traceback or a json.dumps of some report without anyone meaning it to.
# Secret prints as asterisks everywhere (str, repr, format), json.dumps refuses it, pickling is
# refused, and the text comes out only through reveal(), which is easy to grep for.

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, NoReturn

__all__ = ["Secret", "AclCredentials"]

_MASK = "**********"


class Secret:
    """A secret text: shown as asterisks, compared in constant time, read with reveal()."""

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"a Secret holds a str, not {type(text).__name__}")
        object.__setattr__(self, "_text", text)

    def reveal(self) -> str:
        """The secret itself: for signing, and for handing to a client that signs."""
        text: str = object.__getattribute__(self, "_text")
        return text

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("a Secret cannot be changed")

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return format(_MASK, spec)

    def __len__(self) -> int:
        return len(self.reveal())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self.reveal().encode(), other.reveal().encode())

    def __hash__(self) -> int:
        return hash((Secret, self.reveal()))

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is not pickled: it would leave the process in the clear")


@dataclass(frozen=True)
class AclCredentials:
    """An account of the brokers' plain_acl.yml (RocketMQ ACL 1.0): the access key names it,
    the secret key signs every request, the optional security token rides along signed."""

    access_key: str
    secret_key: Secret
    security_token: Secret | None = None

    def __post_init__(self) -> None:
        if not self.access_key:
            raise ValueError("an access key is not empty")
        if not isinstance(self.secret_key, Secret):
            raise TypeError("secret_key is a Secret")
        if self.security_token is not None and not isinstance(self.security_token, Secret):
            raise TypeError("security_token is a Secret or None")
