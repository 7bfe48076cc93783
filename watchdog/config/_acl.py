"""The [acl] table: the RocketMQ ACL 1.0 account the watchdog signs its requests with."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

from ..model import AclCredentials, Secret
from ._base import ConfigError, Strict, read_private_file

__all__ = ["AclSettings", "read_acl_secret", "ACL_KEY_MIN_CHARS"]

# A 4.9.7 broker refuses to load an account whose accessKey or secretKey has 6 characters or
# fewer (PlainPermissionManager.checkPlainAccessConfig): such a key can never be accepted.
ACL_KEY_MIN_CHARS = 7
_SECRET_FILE_MAX_BYTES = 4096


class AclSettings(Strict):
    """The `[acl]` table, for brokers with aclEnable=true: every request to a broker carries
    this account's AccessKey and a Signature made with its secret key (ACL 1.0, plain_acl.yml).
    The account needs `admin: true`: the canary creates its topic with an admin request.

        [acl]
        access_key = "rmq-watchdog"
        secret_key_file = "/etc/rmq-watchdog/acl-secret"   # mode 0600 or 0400; or secret_key
        # security_token = "..."                           # only if your accounts use one

    The secret is read when the config is loaded (and again on reload) and never shown:
    not in logs, `status`, a dry run, webhooks or errors.
    """

    access_key: str = Field(min_length=ACL_KEY_MIN_CHARS, description="the account's accessKey")
    secret_key: SecretStr | None = Field(None, description="its secretKey; or secret_key_file")
    secret_key_file: str | None = Field(
        None, description="a file holding the secretKey; readable by the watchdog's user only"
    )
    security_token: SecretStr | None = Field(None, description="sent, signed, with each request")
    _credentials: AclCredentials | None = PrivateAttr(default=None)

    @field_validator("access_key")
    @classmethod
    def _plain_key(cls, value: str) -> str:
        if value != value.strip() or not value.isprintable():
            raise ValueError("access_key has spaces at its ends or unprintable characters")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> AclSettings:
        if (self.secret_key is None) == (self.secret_key_file is None):
            raise ValueError("give secret_key or secret_key_file (one of them)")
        if self.secret_key_file is not None:
            try:
                secret = read_acl_secret(self.secret_key_file)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        else:
            assert self.secret_key is not None
            secret = self.secret_key.get_secret_value()
            if len(secret) < ACL_KEY_MIN_CHARS:
                raise ValueError(
                    f"secret_key is shorter than {ACL_KEY_MIN_CHARS} characters: RocketMQ "
                    "accepts no secret key that short"
                )
        token = self.security_token
        self._credentials = AclCredentials(
            self.access_key,
            Secret(secret),
            None if token is None else Secret(token.get_secret_value()),
        )
        return self

    def credentials(self) -> AclCredentials:
        """The account as the remoting client and the canary's client sign with it."""
        assert self._credentials is not None  # set by the validator of every instance
        return self._credentials


def read_acl_secret(path: str | Path) -> str:
    """The secret key in ``path``, without surrounding whitespace (RocketMQ trims its keys);
    ConfigError when the file is missing, not a regular file, open to group or others (its
    mode must be 0600 or 0400), larger than 4 KiB, not UTF-8, or shorter than 7 characters."""
    p = Path(path)
    raw = read_private_file(
        p, "secret_key_file", "the secret key", max_bytes=_SECRET_FILE_MAX_BYTES,
        forbidden_bits=0o077,
    )  # fmt: skip
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"secret_key_file {p}: not UTF-8 text") from None
    if len(text) < ACL_KEY_MIN_CHARS:
        raise ConfigError(
            f"secret_key_file {p}: holds fewer than {ACL_KEY_MIN_CHARS} characters: RocketMQ "
            "accepts no secret key that short"
        )
    return text
