"""`sandbox up --acl`: RocketMQ ACL 1.0 on every broker, an admin account for the watchdog and a
normal one for clients, their secret keys in 0600 files."""

# Where 4.9.7 reads its accounts: PlainPermissionManager loads ROCKETMQ_HOME/conf/plain_acl.yml
# (the sandbox starts every JVM with ROCKETMQ_HOME=DIR) and every *.yml under conf/acl/, and
# reloads them when they change; aclEnable=true in a broker's properties turns the check on.
#
# No white address at all, neither global nor per account: everything here runs on 127.0.0.1,
# so any white address would let the watchdog's and the clients' requests through unsigned and
# no test could tell a right signature from a wrong one. What that costs: a 4.x slave sends no
# credentials when it reads its master's topic, offset and subscription tables (SlaveSynchronize),
# and its master refuses it (its log says so every 10 s); the commit log still replicates (the HA
# connection is no remoting). Production clusters list their broker hosts under
# globalWhiteRemoteAddresses instead.

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...model import AclCredentials, Secret
from ._runtime import SandboxError

__all__ = [
    "ACL_ADMIN_KEY",
    "ACL_CLIENT_KEY",
    "AclSetup",
    "acl_credentials",
    "acl_doc",
    "acl_files",
    "acl_leftovers",
    "acl_toml_table",
    "new_acl_setup",
    "plain_acl_yml",
]

ACL_ADMIN_KEY = "rmq-watchdog-admin"
ACL_CLIENT_KEY = "rmq-client"
_PLAIN_ACL = Path("conf") / "plain_acl.yml"
_ADMIN_SECRET = "acl-admin.secret"
_CLIENT_SECRET = "acl-client.secret"


@dataclass(frozen=True)
class AclSetup:
    """The two accounts of a sandbox's plain_acl.yml."""

    admin: AclCredentials
    client: AclCredentials


def new_acl_setup() -> AclSetup:
    """Fresh random secret keys for the watchdog's admin account and the clients' account."""
    return AclSetup(
        admin=AclCredentials(ACL_ADMIN_KEY, Secret(secrets.token_urlsafe(24))),
        client=AclCredentials(ACL_CLIENT_KEY, Secret(secrets.token_urlsafe(24))),
    )


def _yml_str(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(value)


def plain_acl_yml(setup: AclSetup) -> str:
    """The brokers' plain_acl.yml: the watchdog's account is admin (the canary creates its
    topic with an admin request); the clients' may publish and subscribe everywhere."""
    return "\n".join(
        [
            "# written by rmq-watchdog sandbox (--acl): RocketMQ ACL 1.0 accounts",
            "globalWhiteRemoteAddresses: []",
            "accounts:",
            f"  - accessKey: {_yml_str(setup.admin.access_key)}",
            f"    secretKey: {_yml_str(setup.admin.secret_key.reveal())}",
            "    admin: true",
            f"  - accessKey: {_yml_str(setup.client.access_key)}",
            f"    secretKey: {_yml_str(setup.client.secret_key.reveal())}",
            "    admin: false",
            "    defaultTopicPerm: PUB|SUB",
            "    defaultGroupPerm: PUB|SUB",
            "",
        ]
    )


def acl_files(directory: Path, setup: AclSetup) -> dict[Path, str]:
    """What `up --acl` writes 0600: plain_acl.yml and each account's secret key file."""
    return {
        directory / _PLAIN_ACL: plain_acl_yml(setup),
        directory / _ADMIN_SECRET: setup.admin.secret_key.reveal() + "\n",
        directory / _CLIENT_SECRET: setup.client.secret_key.reveal() + "\n",
    }


def acl_leftovers(directory: Path) -> list[Path]:
    """The files an earlier `up --acl` left in ``directory`` (a new `up` starts without them)."""
    return [directory / _PLAIN_ACL, directory / _ADMIN_SECRET, directory / _CLIENT_SECRET]


def acl_doc(directory: Path, setup: AclSetup) -> dict[str, Any]:
    """cluster.json's "acl": the accounts by access key and secret key file (never the keys)."""
    return {
        "plain_acl": str(directory / _PLAIN_ACL),
        "admin": {
            "access_key": setup.admin.access_key,
            "secret_key_file": str(directory / _ADMIN_SECRET),
        },
        "client": {
            "access_key": setup.client.access_key,
            "secret_key_file": str(directory / _CLIENT_SECRET),
        },
    }


def acl_toml_table(directory: Path, setup: AclSetup) -> str:
    """The watchdog.toml [acl] table (a blank line first): the admin account, its file."""
    return "\n".join(
        [
            "",
            "# the brokers run with aclEnable=true (plain_acl.yml in conf/): sign as the admin",
            "[acl]",
            f"access_key = {json.dumps(setup.admin.access_key)}",
            f"secret_key_file = {json.dumps(str(directory / _ADMIN_SECRET))}",
            "",
        ]
    )


def acl_credentials(cluster: dict[str, Any], account: str = "admin") -> AclCredentials | None:
    """An account of a sandbox started with --acl, from its cluster.json (None without);
    its secret read from its file."""
    doc = cluster.get("acl")
    if not doc:
        return None
    entry = doc[account]
    path = Path(entry["secret_key_file"])
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise SandboxError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return AclCredentials(entry["access_key"], Secret(secret))
