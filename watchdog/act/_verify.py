"""What the cluster says back: a broker answers, nameservers list the master, a client writes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from ..config import BrokerConfig
from ..decide import Plan
from ..remoting import RemotingError, get_broker_runtime_info, get_cluster_info
from ._run import StepContext, StepFailed

__all__ = ["answers", "group_on_nameservers", "run_canary", "wait_master"]


async def answers(ctx: StepContext, addr: str, attempts: int = 1) -> bool:
    timeout = ctx.config.probe.timeout_seconds
    for i in range(attempts):
        try:
            await get_broker_runtime_info(ctx.pool.get(addr), timeout_seconds=timeout)
            return True
        except RemotingError:
            if i + 1 < attempts:
                await asyncio.sleep(0.5)
    return False


async def group_on_nameservers(
    ctx: StepContext, broker_name: str
) -> list[tuple[str, Mapping[int, str] | RemotingError]]:
    """Each configured nameserver's brokerId -> addr map of the group, or why it did not
    answer: what the promotion's verification and the fence gate both read."""
    out: list[tuple[str, Mapping[int, str] | RemotingError]] = []
    for addr in ctx.config.nameservers:
        try:
            info = await get_cluster_info(
                ctx.pool.get(addr), timeout_seconds=ctx.config.probe.timeout_seconds
            )
        except RemotingError as exc:
            out.append((addr, exc))
            continue
        out.append((addr, info.broker_addrs.get(broker_name, {})))
    return out


async def wait_master(ctx: StepContext, plan: Plan, broker: BrokerConfig) -> str:
    deadline = ctx.clock() + ctx.config.failover.promote_timeout_seconds
    missing: list[str] = []
    while True:
        missing = []
        answered = 0
        for addr, ids in await group_on_nameservers(ctx, plan.broker_name):
            if isinstance(ids, RemotingError):
                missing.append(f"{addr} unreachable ({type(ids).__name__})")
                continue
            answered += 1
            listed = ids.get(0)
            if listed != broker.addr:
                missing.append(f"{addr} lists id 0 as {listed}")
        majority = answered * 2 > len(ctx.config.nameservers)
        if majority and all("unreachable" in m for m in missing):
            return (
                f"{answered}/{len(ctx.config.nameservers)} nameservers list "
                f"{broker.addr} as {plan.broker_name} id 0"
            )
        if ctx.clock() >= deadline:
            raise StepFailed(
                f"not registered as master within "
                f"{ctx.config.failover.promote_timeout_seconds:g} s: " + "; ".join(missing)
            )
        await asyncio.sleep(0.5)


async def run_canary(ctx: StepContext, plan: Plan, broker: BrokerConfig, topic: str) -> str:
    if ctx.canary is None:
        raise StepFailed("no canary runner configured")
    outcome = await ctx.canary(
        ctx.config.nameservers,
        broker.addr,
        plan.broker_name,
        topic,
        ctx.config.failover.canary_timeout_seconds,
    )
    if not outcome.is_ok:
        raise StepFailed(f"canary failed: {outcome.detail}")
    return outcome.detail
