"""Typed admin calls: real 4.9.7 bodies parsed into values, and every call against the stand-in."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit._golden import Replay, golden, run
from watchdog.remoting import (
    ClusterInfo,
    ProtocolError,
    QueueData,
    RemoteError,
    RemotingClient,
    RequestCode,
    ResponseCode,
    add_write_perm_of_broker,
    delete_kv_config,
    format_properties,
    get_broker_config,
    get_broker_runtime_info,
    get_cluster_info,
    get_kv_config,
    get_max_offset,
    get_topic_route,
    parse_cluster_info,
    parse_kv_table,
    parse_properties,
    parse_topic_route,
    put_kv_config,
    update_broker_config,
    wipe_write_perm_of_broker,
)
from watchdog.remoting._fastjson import dumps
from watchdog.remoting.standin import StandinBroker, StandinNamesrv, StandinServer

pytestmark = pytest.mark.timeout(30)


# --- real bodies --------------------------------------------------------------------------------


def test_real_cluster_info() -> None:
    info = parse_cluster_info(golden("ns_106_cluster_info").body)
    assert info == ClusterInfo(
        broker_addrs={"broker-a": {0: "127.0.0.1:21911", 1: "127.0.0.1:21921"}},
        broker_cluster={"broker-a": "WdCluster"},
        cluster_brokers={"WdCluster": ("broker-a",)},
    )
    assert list(info.registrations()) == [
        ("broker-a", 0, "127.0.0.1:21911"),
        ("broker-a", 1, "127.0.0.1:21921"),
    ]


def test_real_cluster_info_through_the_typed_call() -> None:
    replay = Replay(golden("ns_106_cluster_info"))
    info = run(get_cluster_info(replay, timeout_seconds=1))
    assert info.broker_addrs["broker-a"][1] == "127.0.0.1:21921"
    assert replay.asked == [(RequestCode.GET_BROKER_CLUSTER_INFO, {}, b"")]


def test_fact_sheet_cluster_info_body() -> None:
    body = (
        b'{"brokerAddrTable":{"broker_37_master":{"brokerAddrs":{0:"172.16.16.37:10911"},'
        b'"brokerName":"broker_37_master","cluster":"37_cluster"}},'
        b'"clusterAddrTable":{"37_cluster":["broker_37_master"]}}'
    )
    info = parse_cluster_info(body)
    assert info.broker_addrs == {"broker_37_master": {0: "172.16.16.37:10911"}}
    assert info.broker_cluster == {"broker_37_master": "37_cluster"}


def test_empty_cluster() -> None:
    info = parse_cluster_info(b'{"brokerAddrTable":{},"clusterAddrTable":{}}')
    assert info.broker_addrs == {} and list(info.registrations()) == []


def test_real_routes_in_both_dialects_are_equal() -> None:
    old = parse_topic_route(golden("ns_105_route_v317_fastjson").body)
    new = parse_topic_route(golden("ns_105_route_standard").body)
    assert old == new
    assert new.broker_addrs == {"broker-a": {0: "127.0.0.1:21911", 1: "127.0.0.1:21921"}}
    assert new.queue_datas == (QueueData("broker-a", 6, 4, 4, 0),)
    assert new.queue_datas[0].is_writable and new.queue_datas[0].is_readable


def test_pre_490_route_with_topic_syn_flag() -> None:
    body = (
        b'{"brokerDatas":[{"brokerAddrs":{0:"172.168.0.104:10911"},"brokerName":"b",'
        b'"cluster":"DefaultCluster"}],"filterServerTable":{},"queueDatas":[{"brokerName":"b",'
        b'"perm":4,"readQueueNums":4,"topicSynFlag":3,"writeQueueNums":4}]}'
    )
    route = parse_topic_route(body)
    assert route.queue_datas == (QueueData("b", 4, 4, 4, 3),)
    assert not route.queue_datas[0].is_writable


def test_get_topic_route_asks_for_standard_json() -> None:
    replay = Replay(golden("ns_105_route_standard"))
    run(get_topic_route(replay, "WdTopic", timeout_seconds=1))
    assert replay.asked == [
        (
            RequestCode.GET_ROUTEINFO_BY_TOPIC,
            {"topic": "WdTopic", "acceptStandardJsonOnly": "true"},
            b"",
        )
    ]


def test_real_missing_topic_is_remote_error_17() -> None:
    with pytest.raises(RemoteError) as caught:
        run(
            get_topic_route(
                Replay(golden("ns_105_route_missing")), "NoSuchTopic", timeout_seconds=1
            )
        )
    assert caught.value.code == ResponseCode.TOPIC_NOT_EXIST
    assert caught.value.request_code == RequestCode.GET_ROUTEINFO_BY_TOPIC
    assert caught.value.remark is not None and "NoSuchTopic" in caught.value.remark
    assert "code 17" in str(caught.value)


def test_real_kv_not_found_is_none_and_real_value_is_returned() -> None:
    assert (
        run(get_kv_config(Replay(golden("ns_101_kv_missing")), "wd", "x", timeout_seconds=1))
        is None
    )
    value = run(
        get_kv_config(Replay(golden("ns_101_kv_value_rocketmq")), "wd", "golden", timeout_seconds=1)
    )
    assert value == "v=1"


def test_real_runtime_info() -> None:
    master = parse_kv_table(golden("master_28_runtime_info").body)
    slave = parse_kv_table(golden("slave_28_runtime_info").body)
    assert master["brokerVersionDesc"] == "V4_9_7" and master["brokerVersion"] == "407"
    # 20 messages were sent before the capture; the slave had replicated all of them.
    assert int(master["commitLogMaxOffset"]) == int(slave["commitLogMaxOffset"]) == 3460
    assert all(isinstance(v, str) for v in master.values())
    binary = parse_kv_table(golden("master_28_runtime_info_rocketmq").body)
    assert binary.keys() == master.keys()


def test_real_runtime_info_through_the_typed_call() -> None:
    info = run(get_broker_runtime_info(Replay(golden("slave_28_runtime_info")), timeout_seconds=1))
    assert info["commitLogMaxOffset"] == "3460"


def test_real_broker_configs() -> None:
    master = run(get_broker_config(Replay(golden("master_26_broker_config")), timeout_seconds=1))
    slave = parse_properties(golden("slave_26_broker_config").body)
    assert (master["brokerRole"], master["brokerId"]) == ("ASYNC_MASTER", "0")
    assert (slave["brokerRole"], slave["brokerId"]) == ("SLAVE", "1")
    assert master["listenPort"] == "21911" and master["brokerName"] == "broker-a"
    assert (
        master["messageDelayLevel"] == "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
    )
    assert master["namesrvAddr"] == "127.0.0.1:21876"
    assert master["messageStorePlugIn"] == ""
    assert len(master) == 177


def test_real_broker_config_keeps_backslashes_verbatim() -> None:
    # regionId was set to  C:\data x=1 é  with UPDATE_BROKER_CONFIG (sent escaped). The 4.9.7
    # broker writes its config unescaped (MixAll.properties2String), so the reply line reads
    # regionId=C:\data x=1 é  -- a java.util.Properties-style reader would lose the backslash.
    body = golden("master_26_broker_config_backslash").body
    assert b"regionId=C:\\data x=1 \xc3\xa9\n" in body
    assert parse_properties(body)["regionId"] == "C:\\data x=1 é"
    assert parse_properties(body, java_escapes=True)["regionId"] == "C:data x=1 é"


def test_real_max_offset_and_write_perm_replies() -> None:
    assert (
        run(get_max_offset(Replay(golden("master_30_max_offset")), "WdTopic", 0, timeout_seconds=1))
        == 5
    )
    wipe = Replay(golden("ns_205_wipe_write_perm"))
    assert run(wipe_write_perm_of_broker(wipe, "broker-a", timeout_seconds=1)) == 10
    assert wipe.asked[0][1] == {"brokerName": "broker-a"}
    assert (
        run(
            add_write_perm_of_broker(
                Replay(golden("ns_327_add_write_perm")), "broker-a", timeout_seconds=1
            )
        )
        == 10
    )


def test_real_unsupported_code_is_remote_error_3() -> None:
    with pytest.raises(RemoteError) as caught:
        run(get_broker_runtime_info(Replay(golden("master_9999_unknown_code")), timeout_seconds=1))
    assert caught.value.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED


# --- bodies that are not what the call expects ------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty body"),
        (b"[]", "should be dict"),
        (b'{"clusterAddrTable":{}}', "brokerAddrTable should be dict, got None"),
        (b'{"brokerAddrTable":{"b":{"brokerAddrs":{"x":"a"}}}}', "key 'x' is not an integer"),
        (b'{"brokerAddrTable":{"b":{"brokerAddrs":{0:5}}}}', r"brokerAddrs\[0\] should be str"),
        (b'{"brokerAddrTable":{},"clusterAddrTable":{"c":"b"}}', "should be list"),
        (b'{"brokerAddrTable":{"b":{"brokerAddrs":{0:"a"},"cluster":7}}}', "cluster should be str"),
        (b'{"brokerAddrTable":{0:"a"', "malformed JSON"),
        (b"\xff", "not UTF-8"),
    ],
)
def test_cluster_info_nonsense_is_protocol_error(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_cluster_info(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"brokerDatas":{}}', "brokerDatas should be list"),
        (b'{"nonsense":[1,2,3]}', "brokerDatas should be list, got None"),
        (b'{"brokerDatas":[]}', "queueDatas should be list, got None"),
        (
            b'{"brokerDatas":[],"queueDatas":[{"brokerName":"b","perm":"6"}]}',
            r"queueDatas\[0\].perm should be int",
        ),
        (b'{"brokerDatas":[],"queueDatas":[{"brokerName":"b","perm":true}]}', "perm should be int"),
        (b'{"brokerDatas":[{"brokerAddrs":{}}],"queueDatas":[]}', "brokerName should be str"),
    ],
)
def test_route_nonsense_is_protocol_error(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_topic_route(body)


def test_kv_table_nonsense_is_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="'table' should be dict"):
        parse_kv_table(b'{"nonsense":[1,2,3]}')
    with pytest.raises(ProtocolError, match=r"\['a'\] should be str"):
        parse_kv_table(b'{"table":{"a":1}}')


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "brokerAddrTable",
                    "clusterAddrTable",
                    "brokerDatas",
                    "queueDatas",
                    "brokerAddrs",
                    "brokerName",
                    "cluster",
                    "perm",
                    "table",
                    "0",
                    "x",
                ]
            ),
            c,
            max_size=4,
        )
        | st.dictionaries(st.integers(-3, 3), c, max_size=3)
    ),
    max_leaves=20,
)


@given(json_values)
def test_parsers_raise_only_protocol_error_on_any_json(doc: Any) -> None:
    body = dumps(doc).encode("utf-8")
    for parser in (parse_cluster_info, parse_topic_route, parse_kv_table, parse_properties):
        with contextlib.suppress(ProtocolError):
            parser(body)


# --- properties ---------------------------------------------------------------------------------


def test_properties_plain_reading() -> None:
    text = "# a comment\n! another\n\n  key=value with = sign\r\nempty=\nspaced = x \n"
    assert parse_properties(text) == {"key": "value with = sign", "empty": "", "spaced": " x "}


def test_properties_line_without_equals_is_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="line 2 is not key=value"):
        parse_properties('a=1\n{"nonsense":[1,2,3]}\n')
    with pytest.raises(ProtocolError, match="not UTF-8"):
        parse_properties(b"a=\xff")


def test_properties_java_escapes() -> None:
    text = "# c\na\\ b=1\nc:2\nd 3\ne = \\u00e9\\t\\\\\nlong=one, \\\n     two\nbare\n"
    assert parse_properties(text, java_escapes=True) == {
        "a b": "1",
        "c": "2",
        "d": "3",
        "e": "é\t\\",
        "long": "one, two",
        "bare": "",
    }
    with pytest.raises(ProtocolError, match="uxxxx"):
        parse_properties("a=\\u12", java_escapes=True)


def test_format_properties_is_ascii_and_escaped_like_properties_store() -> None:
    body = format_properties({"regionId": "C:\\data x=1 é", " k": "#v", "brokerPermission": "4"})
    assert body == (b"regionId=C\\:\\\\data x\\=1 \\u00E9\n\\ k=\\#v\nbrokerPermission=4\n")


@given(st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=5))
def test_format_then_java_parse_round_trips(values: dict[str, str]) -> None:
    assert parse_properties(format_properties(values), java_escapes=True) == values


# --- every call against the stand-in ------------------------------------------------------------

Scenario = Callable[
    [StandinNamesrv, StandinBroker, RemotingClient, RemotingClient], Awaitable[None]
]


def with_standin(scenario: Scenario) -> None:
    async def main() -> None:
        server = StandinServer()
        ns = server.add_namesrv()
        master = server.add_broker("broker-a", 0, cluster="C1", register_with=[ns])
        server.add_broker("broker-a", 1, cluster="C1", register_with=[ns])
        server.add_broker("broker-b", 0, cluster="C1", register_with=[ns])
        async with server:
            ns_client, broker_client = RemotingClient(ns.addr), RemotingClient(master.addr)
            try:
                await scenario(ns, master, ns_client, broker_client)
            finally:
                await ns_client.close()
                await broker_client.close()

    run(main())


def test_standin_nameserver_calls() -> None:
    async def scenario(
        ns: StandinNamesrv, master: StandinBroker, nsc: RemotingClient, _: RemotingClient
    ) -> None:
        info = await get_cluster_info(nsc, timeout_seconds=2)
        assert set(info.broker_addrs) == {"broker-a", "broker-b"}
        assert info.broker_addrs["broker-a"][0] == master.addr
        assert set(info.broker_addrs["broker-a"]) == {0, 1}
        assert info.cluster_brokers == {"C1": ("broker-a", "broker-b")}
        assert b"{0:" in ns.cluster_info_body()  # the stand-in speaks fastjson's dialect

        assert await get_kv_config(nsc, "wd", "k", timeout_seconds=2) is None
        await put_kv_config(nsc, "wd", "k", "v 1", timeout_seconds=2)
        assert await get_kv_config(nsc, "wd", "k", timeout_seconds=2) == "v 1"
        await delete_kv_config(nsc, "wd", "k", timeout_seconds=2)
        assert await get_kv_config(nsc, "wd", "k", timeout_seconds=2) is None

        with pytest.raises(RemoteError) as caught:
            await get_topic_route(nsc, "T", timeout_seconds=2)
        assert caught.value.code == ResponseCode.TOPIC_NOT_EXIST
        ns.add_topic("T")
        route = await get_topic_route(nsc, "T", timeout_seconds=2)
        assert {q.broker_name for q in route.queue_datas} == {"broker-a", "broker-b"}
        assert await wipe_write_perm_of_broker(nsc, "broker-a", timeout_seconds=2) == 1
        route = await get_topic_route(nsc, "T", timeout_seconds=2)
        perms = {q.broker_name: q.perm for q in route.queue_datas}
        assert perms == {"broker-a": 4, "broker-b": 6}
        assert await add_write_perm_of_broker(nsc, "broker-a", timeout_seconds=2) == 1
        assert ns.topic_perm("T", "broker-a") == 6

        ns.unregister("broker-a", 0)
        info = await get_cluster_info(nsc, timeout_seconds=2)
        assert dict(info.broker_addrs["broker-a"]) == {1: info.broker_addrs["broker-a"][1]}

    with_standin(scenario)


def test_standin_broker_calls() -> None:
    async def scenario(
        ns: StandinNamesrv, master: StandinBroker, _: RemotingClient, bc: RemotingClient
    ) -> None:
        master.commitlog_max_offset = 123456
        info = await get_broker_runtime_info(bc, timeout_seconds=2)
        assert info["commitLogMaxOffset"] == "123456" and info["brokerVersionDesc"] == "V4_9_7"
        config = await get_broker_config(bc, timeout_seconds=2)
        assert (config["brokerRole"], config["brokerId"]) == ("ASYNC_MASTER", "0")
        assert config["listenPort"] == str(master.port)
        assert config["namesrvAddr"] == ns.addr

        master.broker_role = "SLAVE"
        master.broker_id = 2
        config = await get_broker_config(bc, timeout_seconds=2)
        assert (config["brokerRole"], config["brokerId"]) == ("SLAVE", "2")

        await update_broker_config(
            bc, {"brokerPermission": "4", "noSuchKey": "x"}, timeout_seconds=2
        )
        config = await get_broker_config(bc, timeout_seconds=2)
        assert config["brokerPermission"] == "4" and "noSuchKey" not in config

        master.queue_offsets[("T", 3)] = 42
        assert await get_max_offset(bc, "T", 3, timeout_seconds=2) == 42

    with_standin(scenario)


CALLS: dict[str, Callable[[RemotingClient], Awaitable[object]]] = {
    "cluster_info": lambda c: get_cluster_info(c, timeout_seconds=2),
    "topic_route": lambda c: get_topic_route(c, "T", timeout_seconds=2),
    "kv_get": lambda c: get_kv_config(c, "wd", "k", timeout_seconds=2),
    "runtime_info": lambda c: get_broker_runtime_info(c, timeout_seconds=2),
    "broker_config": lambda c: get_broker_config(c, timeout_seconds=2),
    "max_offset": lambda c: get_max_offset(c, "T", 0, timeout_seconds=2),
    "wipe_perm": lambda c: wipe_write_perm_of_broker(c, "broker-a", timeout_seconds=2),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_error_fault_is_remote_error_with_remark(call: str) -> None:
    async def scenario(
        ns: StandinNamesrv, master: StandinBroker, nsc: RemotingClient, bc: RemotingClient
    ) -> None:
        await ns.set_fault("error")
        await master.set_fault("error")
        with pytest.raises(RemoteError) as caught:
            await CALLS[call](bc)
        assert caught.value.code == ResponseCode.SYSTEM_ERROR
        assert caught.value.remark == "standin fault: error"

    with_standin(scenario)


@pytest.mark.parametrize("call", sorted(CALLS))
def test_nonsense_fault_is_protocol_error(call: str) -> None:
    async def scenario(
        ns: StandinNamesrv, master: StandinBroker, nsc: RemotingClient, bc: RemotingClient
    ) -> None:
        await master.set_fault("nonsense")
        with pytest.raises(ProtocolError):
            await CALLS[call](bc)

    with_standin(scenario)


def test_update_broker_config_needs_keys() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        run(update_broker_config(Replay(golden("master_30_max_offset")), {}, timeout_seconds=1))


def test_fault_modes_are_validated() -> None:
    async def main() -> None:
        node = StandinBroker("b")
        with pytest.raises(ValueError, match="unknown fault mode"):
            await node.set_fault("explode")  # type: ignore[arg-type]

    run(main())


def test_json_in_runtime_info_is_standard() -> None:
    # KVTable is a String-keyed map: fastjson writes it as standard JSON.
    assert json.loads(golden("master_28_runtime_info").body)["table"]["brokerVersion"] == "407"
