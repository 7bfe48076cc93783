"""The drill's view of the cluster: the group's master and slaves as the nameservers and the
brokers themselves report them, the drill topic and its routes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from ...config import BrokerConfig, WatchdogConfig
from ...model import is_master_role
from ...remoting import (
    ClientPool,
    RemoteError,
    RemotingError,
    RequestCode,
    ResponseCode,
    create_topic,
    get_broker_config,
    get_broker_runtime_info,
    get_cluster_info,
    get_topic_route,
    group_topic,
    invoke,
)
from ._report import GroupJudgement

__all__ = [
    "DRILL_TOPIC_PREFIX",
    "answers",
    "commitlog_offset",
    "create_drill_topic",
    "drill_topic",
    "group_view",
    "has_topic",
    "judge_group",
    "ready_master",
    "topic_route_problem",
]

DRILL_TOPIC_PREFIX = "RMQ_WATCHDOG_DRILL"
_REQUEST_TIMEOUT_SECONDS = 2.0


def drill_topic(broker_name: str) -> str:
    """The drill topic of one broker group, e.g. RMQ_WATCHDOG_DRILL_broker-a."""
    return group_topic(DRILL_TOPIC_PREFIX, broker_name)


async def group_view(
    pool: ClientPool, config: WatchdogConfig, broker_name: str
) -> tuple[dict[str, Mapping[int, str] | None], dict[str, Mapping[str, str] | None]]:
    """(each nameserver's brokerId -> addr of the group, each broker's live config)."""

    async def table(addr: str) -> Mapping[int, str] | None:
        try:
            info = await get_cluster_info(pool.get(addr), timeout_seconds=_REQUEST_TIMEOUT_SECONDS)
        except RemotingError:
            return None
        return dict(info.broker_addrs.get(broker_name, {}))

    async def live(broker: BrokerConfig) -> Mapping[str, str] | None:
        try:
            return await get_broker_config(
                pool.get(broker.addr), timeout_seconds=_REQUEST_TIMEOUT_SECONDS
            )
        except RemotingError:
            return None

    group = config.group(broker_name)
    tables = await asyncio.gather(*(table(a) for a in config.nameservers))
    configs = await asyncio.gather(*(live(b) for b in group))
    return (
        dict(zip(config.nameservers, tables, strict=True)),
        {b.key: c for b, c in zip(group, configs, strict=True)},
    )


def ready_master(
    config: WatchdogConfig,
    broker_name: str,
    tables: Mapping[str, Mapping[int, str] | None],
    live: Mapping[str, Mapping[str, str] | None],
) -> BrokerConfig | str:
    """The group's master if the group is ready for a drill, else why it is not: every
    answering nameserver lists the same configured master as id 0, it answers as a master, and
    a configured slave answers as SLAVE and is registered."""
    answering = {ns: t for ns, t in tables.items() if t is not None}
    if not answering:
        return "no nameserver answers"
    masters = {t.get(0) for t in answering.values()}
    if len(masters) != 1 or None in masters:
        return (
            f"the nameservers do not agree on {broker_name}'s master: {sorted(map(str, masters))}"
        )
    addr = masters.pop()
    master = next((b for b in config.group(broker_name) if b.addr == addr), None)
    if master is None:
        return f"{broker_name}'s master {addr} is not a broker in the config"
    if not is_master_role((live.get(master.key) or {}).get("brokerRole")):
        return f"{broker_name}'s master {master.key}@{addr} does not answer as a master"
    registered = {a for t in answering.values() for i, a in t.items() if i != 0}
    slaves = [
        b
        for b in config.group(broker_name)
        if b.key != master.key
        and (live.get(b.key) or {}).get("brokerRole") == "SLAVE"
        and b.addr in registered
    ]
    if not slaves:
        return f"{broker_name} has no slave that answers and is registered: nothing to promote"
    return master


async def topic_route_problem(
    pool: ClientPool, config: WatchdogConfig, topic: str, master: BrokerConfig
) -> str | None:
    """Why the answering nameservers do not (yet) route ``topic`` to the master's writable
    queues; None when they all do."""
    problems = []
    answered = 0
    for ns in config.nameservers:
        try:
            route = await get_topic_route(
                pool.get(ns), topic, timeout_seconds=_REQUEST_TIMEOUT_SECONDS
            )
        except RemoteError as exc:
            if exc.code == ResponseCode.TOPIC_NOT_EXIST:
                answered += 1
                problems.append(f"{ns} has no route yet")
            continue
        except RemotingError:
            continue
        answered += 1
        if (route.broker_addrs.get(master.broker_name) or {}).get(0) != master.addr:
            problems.append(f"{ns} does not route it to {master.addr}")
        elif not any(
            q.broker_name == master.broker_name and q.is_writable and q.write_queue_nums > 0
            for q in route.queue_datas
        ):
            problems.append(f"{ns} lists no writable queue")
    if not answered:
        return "no nameserver answers"
    return "; ".join(problems) or None


async def has_topic(pool: ClientPool, broker: BrokerConfig, topic: str) -> bool | None:
    """Whether the broker's topic config holds ``topic``; None when it does not answer."""
    try:
        reply = await invoke(
            pool.get(broker.addr),
            RequestCode.GET_ALL_TOPIC_CONFIG,
            timeout_seconds=_REQUEST_TIMEOUT_SECONDS,
        )
    except RemotingError:
        return None
    # The body is TopicConfigSerializeWrapper JSON; the topic's name is one of its keys.
    return f'"{topic}"'.encode() in reply.body


def judge_group(
    group: Sequence[BrokerConfig],
    live: Mapping[str, Mapping[str, str] | None],
    tables: Mapping[str, Mapping[int, str] | None],
    old_master_key: str,
    *,
    is_failover_running: bool,
    is_rejoin_pending: bool,
    is_old_master_kept: bool = False,
) -> GroupJudgement:
    """Exactly one broker answers as master and is id 0 on every answering nameserver, the old
    master answers as a slave (or, with ``is_old_master_kept``, is that master), and the
    daemon has nothing left to do about it.

    ``live`` maps broker keys to their live config (None: no answer); ``tables`` maps each
    nameserver to the group's brokerId -> addr (None: no answer).
    """
    old = live.get(old_master_key)
    old_role = old.get("brokerRole") if old else None
    old_id = old.get("brokerId") if old else None
    masters = [b for b in group if is_master_role((live.get(b.key) or {}).get("brokerRole"))]

    def verdict(ok: bool, detail: str, master: BrokerConfig | None = None) -> GroupJudgement:
        return GroupJudgement(
            ok, detail, master.key if master else None, master.addr if master else None,
            old_role, old_id,
        )  # fmt: skip

    if len(masters) != 1:
        shown = ", ".join(f"{b.key}@{b.addr}" for b in masters) or "none"
        return verdict(False, f"{len(masters)} brokers answer as master ({shown})")
    master = masters[0]
    answering = {ns: t for ns, t in tables.items() if t is not None}
    if not answering:
        return verdict(False, "no nameserver answers", master)
    wrong = {ns: t.get(0) for ns, t in answering.items() if t.get(0) != master.addr}
    if wrong:
        shown = ", ".join(f"{ns} lists {addr or 'no'} id 0" for ns, addr in sorted(wrong.items()))
        return verdict(False, f"{master.key}@{master.addr} answers as master but {shown}", master)
    if old is None:
        return verdict(False, f"old master {old_master_key} does not answer", master)
    if is_old_master_kept:
        if master.key != old_master_key:
            return verdict(False, f"{master.key} replaced {old_master_key} as master", master)
        if is_failover_running:
            return verdict(False, "a failover of the group is still running", master)
        return verdict(
            True,
            f"{master.key}@{master.addr} is still the only master and id 0 on "
            f"{len(answering)}/{len(tables)} nameservers",
            master,
        )
    if old_role != "SLAVE" or old_id == "0":
        return verdict(
            False, f"old master {old_master_key} answers as {old_role} id {old_id}", master
        )
    if is_failover_running:
        return verdict(False, "a failover of the group is still running", master)
    if is_rejoin_pending:
        return verdict(False, f"the daemon has not judged {old_master_key}'s rejoin yet", master)
    return verdict(
        True,
        f"{master.key}@{master.addr} is the only master and id 0 on {len(answering)}/"
        f"{len(tables)} nameservers; old master {old_master_key} answers as SLAVE id {old_id}",
        master,
    )


async def create_drill_topic(pool: ClientPool, master: BrokerConfig, topic: str) -> None:
    """Create the drill topic (4 queues) on the master alone; RemotingError when it refuses."""
    await create_topic(
        pool.get(master.addr), topic, read_queue_nums=4, write_queue_nums=4,
        timeout_seconds=_REQUEST_TIMEOUT_SECONDS,
    )  # fmt: skip


async def commitlog_offset(pool: ClientPool, broker: BrokerConfig) -> int | None:
    """The broker's commitLogMaxOffset; None when it does not say."""
    try:
        info = await get_broker_runtime_info(
            pool.get(broker.addr), timeout_seconds=_REQUEST_TIMEOUT_SECONDS
        )
        return int(info["commitLogMaxOffset"])
    except (RemotingError, KeyError, ValueError):
        return None


async def answers(pool: ClientPool, broker: BrokerConfig) -> bool:
    """Whether the broker answers a request for its config."""
    try:
        await get_broker_config(pool.get(broker.addr), timeout_seconds=_REQUEST_TIMEOUT_SECONDS)
    except RemotingError:
        return False
    return True
