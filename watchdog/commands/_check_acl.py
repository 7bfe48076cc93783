"""`check` on ACL-enabled brokers: does the cluster accept the watchdog's account, with admin?"""

# One finding, the cluster's own reason in it: the probe saw every broker's answer already (a
# refusal is an answer, see BrokerObservation.acl_refusal), so a refused account costs no
# request here. An accepted one is asked for its admin right on every broker that answers
# (ask_admin_permission changes nothing): a failover's canary creates its topic with an admin
# request, and would fail on the new master after the promotion without it.

from __future__ import annotations

import asyncio

from ..config import WatchdogConfig
from ..model import ClusterSnapshot
from ..probe import client_pool
from ..remoting import AclRefused, RemotingError, ask_admin_permission
from ._findings import Finding

__all__ = ["acl_findings", "acl_fix"]

_PLAIN_ACL = "plain_acl.yml (ROCKETMQ_HOME/conf/plain_acl.yml, or a file under conf/acl/)"


def acl_fix(reason: str, access_key: str | None) -> str:
    """What to change for a broker's ACL refusal ``reason`` of ``access_key``."""
    if access_key is None or reason.startswith("No accessKey"):
        return (
            "the brokers run with aclEnable=true: add an [acl] table to the watchdog's config "
            f"with access_key and secret_key_file of an account with admin: true in their "
            f"{_PLAIN_ACL}"
        )
    if reason.startswith(("No acl config for", "No PlainAccessResource")):
        return (
            f"access key {access_key} is in no {_PLAIN_ACL} of theirs: add it there on every "
            "broker (admin: true; brokers reload the file by themselves), or set [acl] "
            "access_key to an account that is there"
        )
    if reason.startswith("Check signature failed"):
        return (
            f"the secret key is not the secretKey {_PLAIN_ACL} gives access key {access_key}: "
            "put that secretKey into [acl] secret_key_file (or secret_key)"
        )
    if reason.startswith("Need admin permission"):
        return (
            f"set admin: true for access key {access_key} in the brokers' {_PLAIN_ACL}: the "
            "canary creates its topic on the new master with an admin request"
        )
    return f"check [acl] access_key {access_key} against the brokers' {_PLAIN_ACL}"


async def acl_findings(
    config: WatchdogConfig, snapshot: ClusterSnapshot, *, timeout_seconds: float = 2.0
) -> list[Finding]:
    """Nothing without [acl] on a cluster that refuses nothing; else one finding: the refusal
    (an error: no failover could run), or the account accepted with or without admin."""
    credentials = config.acl_credentials()
    access_key = None if credentials is None else credentials.access_key
    refused = [b for b in snapshot.brokers if b.acl_refusal is not None]
    if refused:
        reasons = sorted({str(b.acl_refusal) for b in refused})
        who = f"access key {access_key}" if access_key else "unsigned requests (no [acl])"
        return [
            Finding(
                "error",
                "acl",
                f"the brokers refuse {who}: {'; '.join(reasons)} (on "
                f"{', '.join(f'{b.key}@{b.addr}' for b in refused)}); no failover can run "
                "without their roles and offsets",
                True,
                id="acl.refused",
                fix=" / ".join(dict.fromkeys(acl_fix(r, access_key) for r in reasons)),
            )
        ]
    if credentials is None:
        return []
    answering = [b for b in snapshot.brokers if b.is_up]
    pool = client_pool(config)
    try:
        results = await asyncio.gather(
            *(
                ask_admin_permission(pool.get(b.addr), timeout_seconds=timeout_seconds)
                for b in answering
            ),
            return_exceptions=True,
        )
    finally:
        await pool.close_all()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, RemotingError):
            raise result
    not_admin = [
        (b, r) for b, r in zip(answering, results, strict=True) if isinstance(r, AclRefused)
    ]
    if not_admin:
        return [
            Finding(
                "error",
                "acl",
                f"access key {access_key} is accepted but has no admin right on "
                f"{', '.join(f'{b.key}@{b.addr}' for b, _ in not_admin)} "
                f"({not_admin[0][1].reason}): every failover's canary would be refused its "
                "topic on the new master, after the promotion",
                True,
                id="acl.not-admin",
                fix=acl_fix("Need admin permission", access_key),
            )
        ]
    unasked = [b.key for b, r in zip(answering, results, strict=True) if isinstance(r, Exception)]
    if len(unasked) == len(answering):
        return [
            Finding(
                "warn",
                "acl",
                f"could not ask whether access key {access_key} has the admin right the canary "
                f"needs: no broker answered ({', '.join(unasked) or 'none up'})",
                id="acl.unknown",
            )
        ]
    detail = f"; not asked, not answering: {', '.join(unasked)}" if unasked else ""
    return [
        Finding(
            "ok",
            "acl",
            f"the brokers accept access key {access_key} with the admin right the canary "
            f"needs ({len(answering) - len(unasked)} asked{detail})",
            id="acl.accepted",
        )
    ]
