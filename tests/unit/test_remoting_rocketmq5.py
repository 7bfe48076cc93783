"""Real RocketMQ 5.3.3 frames (classic master/slave mode) read by the same functions as 4.9.7's.

Captured from a `sandbox up --version 5.3.3` cluster (ASYNC_MASTER broker-a:0, SLAVE broker-a:1,
two nameservers) with the requests the watchdog sends, opaque 1; the REGISTER_BROKER request is
what a real 5.3.3 broker sent to a listener standing in for its nameserver. What differs from
4.9.7, and why none of it needs code:
- every reply says version 479 (V5_3_3);
- cluster info and routes carry a BrokerData field `enableActingMaster` (ignored); routes to a
  caller sending acceptStandardJsonOnly quote the broker ids ("0"), cluster info does not (0);
- runtime info adds keys (brokerActive, timer*, ack/litePull pools) and renames
  getTransferedTps; none the watchdog reads is gone (commitLogMaxOffset, commitLogMinOffset,
  bootTimestamp, brokerVersionDesc, dispatchBehindBytes, putTps);
- GET_BROKER_CONFIG has 411 keys, not 177 (haSlaveFallbehindMax is gone), still one each;
- topic configs carry `attributes`, wrappers a `mappingDataVersion` (ignored);
- a 5.x nameserver refuses (code 1) a broker's first registration whose topic table holds
  exactly one topic (RouteInfoManager.registerBroker 5.3.3: that shape is its single-topic
  update); 4.9.7 accepts it.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.unit import _golden
from tests.unit._golden import Replay, run
from watchdog.remoting import (
    DataVersion,
    RegisterBrokerBody,
    RegisterBrokerRequest,
    RemoteError,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    TopicConfig,
    encode_frame,
    get_all_topic_config,
    get_cluster_info,
    get_max_offset,
    get_plugin_info,
    get_topic_route,
    parse_register_request,
    parse_topic_route,
    register_broker,
)
from watchdog.remoting._admin import broker_config_of, broker_runtime_info_of

pytestmark = pytest.mark.timeout(30)

GOLDEN = _golden.GOLDEN / "rocketmq-5.3.3"
MASTER, SLAVE = "127.0.0.1:32431", "127.0.0.1:32441"


def header_of(frame: bytes) -> bytes:
    (mark,) = struct.unpack(">i", frame[4:8])
    return frame[8 : 8 + (mark & 0xFFFFFF)]


def golden(name: str) -> RemotingCommand:
    return _golden.golden(name, GOLDEN)


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.bin")), ids=lambda p: p.stem)
def test_frames_decode_and_reencode(path: Path) -> None:
    frame = path.read_bytes()
    cmd = golden(path.stem)
    assert cmd.language == "JAVA" and cmd.version == 479  # MQVersion V5_3_3
    assert cmd.is_response is (not path.stem.startswith("broker_"))
    reencoded = encode_frame(cmd)
    header = header_of(frame)
    if b'"extFields":{},' in header:
        # Java sent an empty (non-null) map; written back as absent, which Java reads the same.
        assert header_of(reencoded) == header.replace(b'"extFields":{},', b"")
        assert reencoded.endswith(frame[8 + len(header) :])
    else:
        assert reencoded == frame


def test_cluster_info_with_enable_acting_master() -> None:
    reply = golden("ns_106_cluster_info")
    assert b'"enableActingMaster":false' in reply.body and b"{0:" in reply.body
    info = run(get_cluster_info(Replay(reply), timeout_seconds=1))
    assert info.broker_addrs == {"broker-a": {0: MASTER, 1: SLAVE}}
    assert info.broker_cluster == {"broker-a": "XdclassCluster"}
    assert info.cluster_brokers == {"XdclassCluster": ("broker-a",)}


def test_route_with_quoted_ids_and_enable_acting_master() -> None:
    reply = golden("ns_105_route_standard")
    assert b'"brokerAddrs":{"0":' in reply.body and b'"enableActingMaster"' in reply.body
    route = run(get_topic_route(Replay(reply), "RMQ_WATCHDOG_DRILL_broker-a", timeout_seconds=1))
    assert route.broker_addrs == {"broker-a": {0: MASTER, 1: SLAVE}}
    (queues,) = route.queue_datas
    assert queues.broker_name == "broker-a" and queues.write_queue_nums == 4
    assert queues.is_writable
    assert parse_topic_route(reply.body) == route


def test_missing_route_is_remote_error_17() -> None:
    missing = Replay(golden("ns_105_route_missing"))
    with pytest.raises(RemoteError) as caught:
        run(get_topic_route(missing, "NoSuchTopic", timeout_seconds=1))
    assert caught.value.code == ResponseCode.TOPIC_NOT_EXIST
    assert caught.value.remark is not None and "NoSuchTopic" in caught.value.remark


def test_runtime_info_keys_the_watchdog_reads() -> None:
    # broker_runtime_info_of and broker_config_of are what the prober reads replies with.
    master = broker_runtime_info_of(golden("master_28_runtime_info"))
    slave = broker_runtime_info_of(golden("slave_28_runtime_info"))
    assert master["brokerVersionDesc"] == slave["brokerVersionDesc"] == "V5_3_3"
    assert master["commitLogMaxOffset"] == slave["commitLogMaxOffset"] == "110524"
    assert master["commitLogMinOffset"] == "0" and master["dispatchBehindBytes"] == "0"
    assert int(master["bootTimestamp"]) > 0 and master["putTps"].split()
    assert (master["brokerActive"], slave["brokerActive"]) == ("true", "false")
    assert "getTransferredTps" in master and "getTransferedTps" not in master


def test_broker_config_roles_and_classic_mode() -> None:
    master = broker_config_of(golden("master_26_broker_config"))
    slave = broker_config_of(golden("slave_26_broker_config"))
    assert (master["brokerRole"], master["brokerId"]) == ("ASYNC_MASTER", "0")
    assert (slave["brokerRole"], slave["brokerId"]) == ("SLAVE", "1")
    assert master["enableControllerMode"] == slave["enableControllerMode"] == "false"
    assert master["enableSlaveActingMaster"] == "false"
    assert master["listenPort"] == "32431" and master["brokerName"] == "broker-a"
    assert len(master) == len(slave) == 411
    assert "haSlaveFallbehindMax" not in master
    # Each key once: the merged configs (broker, store, netty server and client) do not clash.
    lines = [line for line in golden("master_26_broker_config").body.split(b"\n") if b"=" in line]
    assert len(lines) == len(master)
    assert '"stateVersion":0' in golden("master_26_broker_config").ext_fields["version"]


def test_max_offset() -> None:
    replay = Replay(golden("master_30_max_offset"))
    assert run(get_max_offset(replay, "RMQ_WATCHDOG_DRILL_broker-a", 0, timeout_seconds=1)) == 90


def test_plugin_info_on_5x_means_no_plugin() -> None:
    # The in-place plug-in is 4.9.x only: a 5.3.3 broker answers its code as unsupported, so
    # a promotion = "inplace" plan takes the restart path.
    reply = golden("slave_30900_plugin_info")
    assert reply.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
    assert run(get_plugin_info(Replay(reply), timeout_seconds=1)) is None


def test_topic_config_wrapper_with_attributes_and_mapping_version() -> None:
    reply = golden("master_21_all_topic_config")
    assert b'"mappingDataVersion"' in reply.body and b'"attributes":{}' in reply.body
    body = run(get_all_topic_config(Replay(reply), timeout_seconds=1))
    topics = {t.topic_name: t for t in body.topic_configs}
    assert body.data_version.counter == 35
    assert topics["RMQ_WATCHDOG_DRILL_broker-a"] == TopicConfig(
        "RMQ_WATCHDOG_DRILL_broker-a", 4, 4, 6
    )
    assert "rmq_sys_wheel_timer" in topics and "RMQ_WATCHDOG_CANARY_broker-a" in topics


def test_a_real_5x_broker_registration_parses() -> None:
    cmd = golden("broker_103_register_request")
    assert cmd.code == RequestCode.REGISTER_BROKER and not cmd.is_response
    assert cmd.ext_fields["enableActingMaster"] == "false"
    request = parse_register_request(cmd)  # its bodyCrc32 checked
    assert (request.broker_name, request.broker_id, request.cluster_name) == (
        "broker-z", 0, "WdCluster",
    )  # fmt: skip
    assert request.broker_addr == "127.0.0.1:39911"
    assert request.ha_server_addr == "127.0.0.1:39912" and request.compressed is False
    names = {t.topic_name for t in request.body.topic_configs}
    assert len(names) == 13 and "TBW102" in names and "rmq_sys_wheel_timer" in names
    assert b'"mappingDataVersion"' in cmd.body


def _registration(topics: int) -> RegisterBrokerRequest:
    return RegisterBrokerRequest(
        cluster_name="XdclassCluster",
        broker_name="broker-z",
        broker_addr="127.0.0.1:39911",
        broker_id=0,
        ha_server_addr="127.0.0.1:39912",
        body=RegisterBrokerBody(
            data_version=DataVersion(1, 1),
            topic_configs=tuple(TopicConfig(f"WdTopic{i}", 4, 4) for i in range(topics)),
        ),
    )


def test_register_replies_of_a_5x_nameserver() -> None:
    # Both replies answered the watchdog's own REGISTER_BROKER (version 407 body) on a 5.3.3
    # nameserver: two topics accepted, one topic refused as a first registration.
    ok = Replay(golden("ns_103_register"))
    result = run(register_broker(ok, _registration(2), timeout_seconds=1))
    assert (result.master_addr, result.ha_server_addr) == (None, None)
    refused = Replay(golden("ns_103_register_one_topic_refused"))
    with pytest.raises(RemoteError) as caught:
        run(register_broker(refused, _registration(1), timeout_seconds=1))
    assert caught.value.code == ResponseCode.SYSTEM_ERROR
    assert caught.value.remark == "register broker failed"
