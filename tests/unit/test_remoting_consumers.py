"""Consumer-group admin calls (201, 203): real 4.9.7 replies parsed, requests as the broker reads
them, malformed bodies refused with ProtocolError."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit._golden import Replay, golden
from watchdog.remoting import (
    GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
    GET_CONSUMER_CONNECTION_LIST,
    ConsumerClient,
    ProtocolError,
    RemoteError,
    RemotingCommand,
    Subscription,
    SubscriptionGroup,
    get_consumer_connection,
    get_subscription_groups,
    parse_consumer_connection,
    parse_subscription_groups,
)


def test_the_request_codes_are_4_9_7s() -> None:
    # RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG and GET_CONSUMER_CONNECTION_LIST in 4.9.7.
    assert (GET_ALL_SUBSCRIPTIONGROUP_CONFIG, GET_CONSUMER_CONNECTION_LIST) == (201, 203)


def test_a_real_subscription_group_table() -> None:
    """Captured from a 4.9.7 master after three push consumers of WdAdviceCG heartbeat: the
    built-in groups and the auto-created one."""
    replay = Replay(golden("master_201_subscription_groups"))
    groups = asyncio.run(get_subscription_groups(replay, timeout_seconds=1))
    assert replay.asked == [(201, {}, b"")]
    names = [g.group_name for g in groups]
    assert names == sorted(names)
    assert "WdAdviceCG" in names and "TOOLS_CONSUMER" in names
    assert SubscriptionGroup("WdAdviceCG", True, True) in groups


def test_a_real_consumer_connection_list() -> None:
    """Three librocketmq push consumers (instance names advice-0..2) in one process."""
    replay = Replay(golden("master_203_consumer_connections"))
    found = asyncio.run(get_consumer_connection(replay, "WdAdviceCG", timeout_seconds=1))
    assert replay.asked == [(203, {"consumerGroup": "WdAdviceCG"}, b"")]
    assert found is not None
    assert [c.client_id.rpartition("@")[2] for c in found.clients] == [
        "advice-0",
        "advice-1",
        "advice-2",
    ]
    assert len(found.client_ids) == 3
    assert all(c.language == "CPP" and c.version == 63 for c in found.clients)
    assert found.clients[0].client_addr.startswith("127.0.0.1:")
    assert found.message_model == "CLUSTERING"
    assert found.consume_type == "CONSUME_PASSIVELY"
    assert found.consume_from_where == "CONSUME_FROM_LAST_OFFSET"
    assert dict(found.subscriptions) == {
        "WdAdviceTopic": Subscription("WdAdviceTopic", "*", "TAG"),
        "%RETRY%WdAdviceCG": Subscription("%RETRY%WdAdviceCG", "*", "TAG"),
    }


def test_a_group_not_online_is_none() -> None:
    reply = golden("master_203_consumer_not_online")
    assert reply.code == 206 and reply.remark == "the consumer group[WdAdviceCG] not online"
    found = asyncio.run(get_consumer_connection(Replay(reply), "WdAdviceCG", timeout_seconds=1))
    assert found is None


def test_another_error_code_raises() -> None:
    reply = RemotingCommand(code=1, flag=1, remark="the custom field <consumerGroup> is null")
    with pytest.raises(RemoteError) as caught:
        asyncio.run(get_consumer_connection(Replay(reply), "g", timeout_seconds=1))
    assert caught.value.code == 1


def test_fields_the_broker_leaves_out_take_java_defaults() -> None:
    found = parse_consumer_connection(
        b'{"connectionSet":[{"clientId":"c1","version":401}],"subscriptionTable":{}}'
    )
    assert found.clients == (ConsumerClient("c1", "", "", 401),)
    assert found.message_model is None and dict(found.subscriptions) == {}
    [group] = parse_subscription_groups(b'{"subscriptionGroupTable":{"g":{}}}')
    assert group == SubscriptionGroup("g", True, True)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'{"connectionSet":{}}',
        b'{"connectionSet":[{"version":1}]}',
        b'{"connectionSet":[{"clientId":"c","version":"1"}]}',
        b'{"connectionSet":[],"subscriptionTable":{"t":[]}}',
        b'{"connectionSet":[],"messageModel":1}',
    ],
)
def test_a_malformed_connection_body_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_consumer_connection(body)


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"subscriptionGroupTable":[]}',
        b'{"subscriptionGroupTable":{"g":1}}',
        b'{"subscriptionGroupTable":{"g":{"consumeEnable":"yes"}}}',
    ],
)
def test_a_malformed_group_table_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_subscription_groups(body)
