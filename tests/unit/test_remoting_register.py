"""REGISTER_BROKER: the 4.9.7 body in both forms (bytes from Java's encoder), the request
header, its CRC, and the call's reply."""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import replace

import pytest

from tests.unit._golden import Replay
from watchdog.remoting import (
    DataVersion,
    FrameDecoder,
    ProtocolError,
    RegisterBrokerBody,
    RegisterBrokerRequest,
    RemoteError,
    RemotingCommand,
    RequestCode,
    TopicConfig,
    decode_register_body,
    encode_frame,
    encode_register_body,
    get_all_topic_config,
    parse_register_request,
    parse_topic_config_wrapper,
    register_broker,
    register_broker_command,
)

pytestmark = pytest.mark.timeout(30)

# Written by rocketmq-common-4.9.7's RegisterBrokerBody.encode(false) and encode(true) for a
# body with DataVersion(timestamp 1700000000123, counter 7) and one topic BENCH_T (4 read and
# 4 write queues, perm 6), and UtilAll.crc32 of each (a throwaway Java class run against the
# cached 4.9.7 jars).
JAVA_JSON = (
    b'{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":7,'
    b'"timestamp":1700000000123},"topicConfigTable":{"BENCH_T":{"order":false,"perm":6,'
    b'"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"BENCH_T","topicSysFlag":0,'
    b'"writeQueueNums":4}}}}'
)
JAVA_JSON_CRC = 1996588266
JAVA_COMPRESSED = bytes.fromhex(
    "78da63606050af564ace2fcd2b492d52b232d7512ac9cc4d2d2e49cc2d50b232343780024323e35a060606"
    "4620967072f573f6880f513001423385604f3f771fd7f8104777a01c53742c003cd312d2"
)
JAVA_COMPRESSED_CRC = 2025495843

BODY = RegisterBrokerBody(DataVersion(1700000000123, 7), (TopicConfig("BENCH_T", 4, 4, 6),))


def request(**changes: object) -> RegisterBrokerRequest:
    base = RegisterBrokerRequest(
        cluster_name="DefaultCluster",
        broker_name="broker-a",
        broker_addr="127.0.0.1:10921",
        broker_id=1,
        ha_server_addr="127.0.0.1:10922",
        body=BODY,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("compressed", "java"), [(False, JAVA_JSON), (True, JAVA_COMPRESSED)], ids=["json", "zlib"]
)
def test_body_is_the_bytes_java_writes(compressed: bool, java: bytes) -> None:
    assert encode_register_body(BODY, compressed=compressed) == java
    assert decode_register_body(java, compressed=compressed) == BODY


def test_compressed_body_keeps_what_topic_config_encode_keeps() -> None:
    body = RegisterBrokerBody(
        DataVersion(5, 2),
        (TopicConfig("A", 1, 2, 4, topic_sys_flag=3, order=True), TopicConfig("%RETRY%G", 1, 1)),
        ("10.0.0.1:1",),
    )
    assert decode_register_body(encode_register_body(body, compressed=False), compressed=False) == (
        body
    )
    # "name read write perm filterType": the sys flag and order are lost, as in Java.
    assert decode_register_body(encode_register_body(body, compressed=True), compressed=True) == (
        replace(body, topic_configs=(TopicConfig("A", 1, 2, 4), TopicConfig("%RETRY%G", 1, 1)))
    )


@pytest.mark.parametrize("compressed", [False, True])
def test_request_round_trips_through_a_frame(compressed: bool) -> None:
    sent = request(compressed=compressed, broker_id=3)
    cmd = register_broker_command(sent)
    assert cmd.code == RequestCode.REGISTER_BROKER.value == 103
    assert dict(cmd.ext_fields) == {
        "brokerAddr": "127.0.0.1:10921",
        "brokerId": "3",
        "brokerName": "broker-a",
        "bodyCrc32": str(JAVA_COMPRESSED_CRC if compressed else JAVA_JSON_CRC),
        "clusterName": "DefaultCluster",
        "compressed": "true" if compressed else "false",
        "haServerAddr": "127.0.0.1:10922",
    }
    (received,) = FrameDecoder().feed(encode_frame(cmd, opaque=9))
    assert parse_register_request(received) == sent


def test_a_body_that_does_not_match_its_crc_is_refused() -> None:
    cmd = register_broker_command(request())
    tampered = replace(cmd, body=cmd.body.replace(b'"perm":6', b'"perm":2'))
    with pytest.raises(ProtocolError, match="bodyCrc32"):
        parse_register_request(tampered)
    # bodyCrc32 0 skips the check, as on the nameserver.
    unchecked = replace(tampered, ext_fields={**tampered.ext_fields, "bodyCrc32": "0"})
    assert parse_register_request(unchecked).body.topic_configs[0].perm == 2


def test_an_empty_body_is_an_empty_table_at_version_zero() -> None:
    cmd = replace(register_broker_command(request()), body=b"")
    cmd = replace(cmd, ext_fields={**cmd.ext_fields, "bodyCrc32": "0"})
    assert parse_register_request(cmd).body == RegisterBrokerBody(DataVersion(0, 0))


@pytest.mark.parametrize(
    "bad",
    [
        request(broker_id=-1),
        request(body=RegisterBrokerBody(DataVersion(0, 0), (TopicConfig("a b"),))),
        request(body=RegisterBrokerBody(DataVersion(0, 0), (TopicConfig("a", 2**31),))),
        request(body=RegisterBrokerBody(DataVersion(0, 0), (TopicConfig("a"), TopicConfig("a")))),
    ],
    ids=["negative id", "space in name", "queue count", "topic twice"],
)
def test_what_java_could_not_read_is_not_sent(bad: RegisterBrokerRequest) -> None:
    with pytest.raises(ValueError):
        register_broker_command(bad)


@pytest.mark.parametrize(
    "data",
    [
        b"\x78\xda garbage",
        JAVA_COMPRESSED[:-6],
        # a topic count far past the end
        zlib.compress(b"\x00\x00\x00\x02{}\x7f\xff\xff\xff"),
    ],
    ids=["not zlib", "truncated", "count past the end"],
)
def test_a_broken_compressed_body_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_register_body(data, compressed=True)


def test_topic_config_wrapper_of_get_all_topic_config() -> None:
    # The shape of a 4.9.7 broker's GET_ALL_TOPIC_CONFIG body (TopicConfigManager.encode).
    body = (
        b'{"dataVersion":{"counter":3,"timestamp":1700000000999},"topicConfigTable":{'
        b'"TBW102":{"order":false,"perm":7,"readQueueNums":8,"topicFilterType":"SINGLE_TAG",'
        b'"topicName":"TBW102","topicSysFlag":0,"writeQueueNums":8},'
        b'"BENCH_T":{"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG",'
        b'"topicName":"BENCH_T","topicSysFlag":0,"writeQueueNums":4}}}'
    )
    assert parse_topic_config_wrapper(body) == RegisterBrokerBody(
        DataVersion(1700000000999, 3),
        (TopicConfig("TBW102", 8, 8, 7), TopicConfig("BENCH_T", 4, 4, 6)),
    )
    with pytest.raises(ProtocolError, match="names topic"):
        parse_topic_config_wrapper(body.replace(b'"topicName":"TBW102"', b'"topicName":"X"'))


def test_register_broker_sends_the_request_and_reads_the_reply_header() -> None:
    ok = RemotingCommand(
        code=0, flag=1, ext_fields={"masterAddr": "127.0.0.1:10911", "haServerAddr": ""}
    )
    server = Replay(ok)
    result = asyncio.run(register_broker(server, request(), timeout_seconds=1.0))
    assert (result.master_addr, result.ha_server_addr) == ("127.0.0.1:10911", None)
    ((code, ext_fields, body),) = server.asked
    sent = RemotingCommand(code, ext_fields=ext_fields, body=body)
    assert parse_register_request(sent) == request()

    refused = Replay(RemotingCommand(code=1, flag=1, remark="crc32 not match"))
    with pytest.raises(RemoteError):
        asyncio.run(register_broker(refused, request(), timeout_seconds=1.0))


def test_get_all_topic_config_reads_the_wrapper() -> None:
    reply = RemotingCommand(code=0, flag=1, body=JAVA_JSON[JAVA_JSON.index(b':{"data') + 1 : -1])
    server = Replay(reply)
    assert asyncio.run(get_all_topic_config(server, timeout_seconds=1.0)) == BODY
    ((code, _, _),) = server.asked
    assert code == RequestCode.GET_ALL_TOPIC_CONFIG
