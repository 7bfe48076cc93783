"""Consumer-group admin calls on a broker: its subscription groups and a group's live clients."""

# Checked against rocketmq-all-4.9.7 (RequestCode, AdminBrokerProcessor.getAllSubscriptionGroup
# and getConsumerConnectionList, SubscriptionGroupManager, SubscriptionGroupConfig,
# ConsumerConnection, Connection, SubscriptionData, GetConsumerConnectionListRequestHeader) and
# captured from a 4.9.7 broker (tests/unit/golden/master_20{1,3}_*.bin):
# - 201 GET_ALL_SUBSCRIPTIONGROUP_CONFIG takes no header; the body is the broker's
#   SubscriptionGroupManager as fastjson writes it: {"dataVersion": {...},
#   "subscriptionGroupTable": {name: {"brokerId": 0, "consumeBroadcastEnable": true,
#   "consumeEnable": true, "consumeFromMinEnable": true, "groupName": name,
#   "notifyConsumerIdsChangedEnable": true, "retryMaxTimes": 16, "retryQueueNums": 1,
#   "whichBrokerWhenConsumeSlowly": 1}}}. The built-in groups (TOOLS_CONSUMER, ...) are always
#   there; a client's group appears once its heartbeat auto-created it (the default
#   autoCreateSubscriptionGroup=true) or an admin created it.
# - 203 GET_CONSUMER_CONNECTION_LIST takes consumerGroup (@CFNotNull). A group with no client
#   connected to this broker is code 206 CONSUMER_NOT_ONLINE ("the consumer group[G] not
#   online"); otherwise the body is a ConsumerConnection: {"connectionSet": [{"clientAddr",
#   "clientId", "language" (LanguageCode name), "version"}], "consumeFromWhere", "consumeType",
#   "messageModel" (CLUSTERING | BROADCASTING), "subscriptionTable": {topic: {"classFilterMode",
#   "codeSet", "expressionType", "subString", "subVersion", "tagsSet", "topic"}}}. One entry per
#   connection (channel): a client process with several client instances (instance names) is
#   several clients. A push consumer also subscribes its group's retry topic %RETRY%<group>.

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ._admin import Requester, ResponseCode, _expect, _json_body, invoke

__all__ = [
    "GET_ALL_SUBSCRIPTIONGROUP_CONFIG",
    "GET_CONSUMER_CONNECTION_LIST",
    "ConsumerClient",
    "ConsumerConnection",
    "Subscription",
    "SubscriptionGroup",
    "get_consumer_connection",
    "get_subscription_groups",
    "parse_consumer_connection",
    "parse_subscription_groups",
]

GET_ALL_SUBSCRIPTIONGROUP_CONFIG = 201
GET_CONSUMER_CONNECTION_LIST = 203


@dataclass(frozen=True)
class SubscriptionGroup:
    """One entry of a broker's subscription group table (the fields a check reads)."""

    group_name: str
    consume_enable: bool = True
    consume_broadcast_enable: bool = True


@dataclass(frozen=True)
class ConsumerClient:
    """One client connection of a consumer group, as the broker lists it."""

    client_id: str
    client_addr: str
    language: str
    version: int


@dataclass(frozen=True)
class Subscription:
    topic: str
    sub_string: str  # the tag expression, "*" for all
    expression_type: str = "TAG"


@dataclass(frozen=True)
class ConsumerConnection:
    """A consumer group's clients connected to one broker and what they subscribe."""

    clients: tuple[ConsumerClient, ...]
    subscriptions: Mapping[str, Subscription]  # topic -> subscription
    message_model: str | None  # CLUSTERING or BROADCASTING
    consume_type: str | None  # CONSUME_PASSIVELY (push) or CONSUME_ACTIVELY (pull)
    consume_from_where: str | None

    @property
    def client_ids(self) -> frozenset[str]:
        return frozenset(c.client_id for c in self.clients)


def _bool(value: Any, default: bool, where: str) -> bool:
    return default if value is None else bool(_expect(value, bool, where))


def _optional_str(value: Any, where: str) -> str | None:
    return None if value is None else str(_expect(value, str, where))


def parse_subscription_groups(body: bytes) -> tuple[SubscriptionGroup, ...]:
    """The groups of a GET_ALL_SUBSCRIPTIONGROUP_CONFIG body, sorted by name."""
    doc = _expect(_json_body(body, "subscription groups"), dict, "subscription groups body")
    table = _expect(doc.get("subscriptionGroupTable"), dict, "subscriptionGroupTable")
    groups = []
    for name, entry in sorted(table.items()):
        where = f"subscriptionGroupTable[{name!r}]"
        entry = _expect(entry, dict, where)
        groups.append(
            SubscriptionGroup(
                group_name=name,
                consume_enable=_bool(entry.get("consumeEnable"), True, f"{where}.consumeEnable"),
                consume_broadcast_enable=_bool(
                    entry.get("consumeBroadcastEnable"), True, f"{where}.consumeBroadcastEnable"
                ),
            )
        )
    return tuple(groups)


def parse_consumer_connection(body: bytes) -> ConsumerConnection:
    """A GET_CONSUMER_CONNECTION_LIST body."""
    doc = _expect(_json_body(body, "consumer connection"), dict, "consumer connection body")
    clients = []
    for i, entry in enumerate(_expect(doc.get("connectionSet", []), list, "connectionSet")):
        where = f"connectionSet[{i}]"
        entry = _expect(entry, dict, where)
        clients.append(
            ConsumerClient(
                client_id=_expect(entry.get("clientId"), str, f"{where}.clientId"),
                client_addr=_optional_str(entry.get("clientAddr"), f"{where}.clientAddr") or "",
                language=_optional_str(entry.get("language"), f"{where}.language") or "",
                version=_expect(entry.get("version", 0), int, f"{where}.version"),
            )
        )
    table = _expect(doc.get("subscriptionTable", {}), dict, "subscriptionTable")
    subscriptions: dict[str, Subscription] = {}
    for topic, entry in table.items():
        where = f"subscriptionTable[{topic!r}]"
        entry = _expect(entry, dict, where)
        subscriptions[topic] = Subscription(
            topic=topic,
            sub_string=_optional_str(entry.get("subString"), f"{where}.subString") or "*",
            expression_type=_optional_str(entry.get("expressionType"), f"{where}.expressionType")
            or "TAG",
        )
    return ConsumerConnection(
        clients=tuple(sorted(clients, key=lambda c: c.client_id)),
        subscriptions=MappingProxyType(subscriptions),
        message_model=_optional_str(doc.get("messageModel"), "messageModel"),
        consume_type=_optional_str(doc.get("consumeType"), "consumeType"),
        consume_from_where=_optional_str(doc.get("consumeFromWhere"), "consumeFromWhere"),
    )


async def get_subscription_groups(
    client: Requester, *, timeout_seconds: float
) -> tuple[SubscriptionGroup, ...]:
    """Every subscription group the broker ``client`` talks to knows."""
    reply = await invoke(client, GET_ALL_SUBSCRIPTIONGROUP_CONFIG, timeout_seconds=timeout_seconds)
    return parse_subscription_groups(reply.body)


async def get_consumer_connection(
    client: Requester, group: str, *, timeout_seconds: float
) -> ConsumerConnection | None:
    """``group``'s clients connected to this broker; None when none is (CONSUMER_NOT_ONLINE)."""
    reply = await invoke(
        client,
        GET_CONSUMER_CONNECTION_LIST,
        {"consumerGroup": group},
        timeout_seconds=timeout_seconds,
        accept_codes=(ResponseCode.SUCCESS, ResponseCode.CONSUMER_NOT_ONLINE),
    )
    if reply.code == ResponseCode.CONSUMER_NOT_ONLINE:
        return None
    return parse_consumer_connection(reply.body)
