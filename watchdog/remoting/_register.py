"""REGISTER_BROKER (103) as a 4.9.7 broker sends it to a nameserver: request, body, reply."""

# Checked against rocketmq-all-4.9.7 (RegisterBrokerRequestHeader, RegisterBrokerBody,
# TopicConfigSerializeWrapper, TopicConfig.encode, DataVersion, UtilAll.crc32,
# DefaultRequestProcessor.registerBrokerWithFilterServer, RouteInfoManager.registerBroker):
# - header fields brokerName, brokerAddr, clusterName, haServerAddr and brokerId are @CFNotNull;
#   `compressed` (default false) says which body form follows; `bodyCrc32` is CRC32 & 0x7FFFFFFF
#   of the body, 0 skips the check.
# - a request whose version is >= V3_0_11 (ours: 407) reads a RegisterBrokerBody: fastjson of
#   {"filterServerList": [...], "topicConfigSerializeWrapper": {"dataVersion": {...},
#   "topicConfigTable": {name: TopicConfig}}}, or, compressed, a zlib stream of int32-length
#   prefixed parts: the DataVersion JSON, the topic count, each topic as TopicConfig.encode()
#   ("name read write perm filterType": topicSysFlag and order do not survive), then the filter
#   server list JSON. An empty body registers an empty topic table with version 0/0.
# - the nameserver answers SUCCESS whatever it did (registerBroker logs and swallows its own
#   exceptions); haServerAddr and masterAddr are set only for a non-zero id whose group has a
#   live master.
# - a 5.3.3 nameserver reads the same request (version 407: the body above) but answers
#   SYSTEM_ERROR "register broker failed" to a first registration of an address whose topic
#   table holds exactly one topic (its single-topic update shape); register a broker's whole
#   table, as bench/spare_id.py does.
#
# What a registration does on the nameserver (why this is not a probe and not an admin call):
# - the registration owns brokerLiveTable[brokerAddr] with the channel it came on: when that
#   connection closes, onChannelDestroy removes that address from its group (and the group's
#   topic queue data when no address is left), as for a broker that died; a later registration
#   of the same address from another channel takes the entry over, and closing the first one
#   then removes nothing (onChannelDestroy matches the channel, not the address).
# - the same address registered under another id replaces its other ids ("switch slave to
#   master"), so any id can be moved by anyone who can reach the nameserver.
# - no UNREGISTER_BROKER here on purpose: it is keyed by address, not by channel, so sent after
#   the real broker registered the address again it would drop that broker's live entry.

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import _fastjson
from ._admin import RequestCode, Requester, _expect, _int32, _java_long, check_reply
from ._codec import RemotingCommand
from ._errors import ProtocolError

__all__ = [
    "DataVersion",
    "RegisterBrokerBody",
    "RegisterBrokerRequest",
    "RegisterBrokerResult",
    "TopicConfig",
    "decode_register_body",
    "encode_register_body",
    "get_all_topic_config",
    "parse_register_request",
    "parse_topic_config_wrapper",
    "register_broker",
    "register_broker_command",
]

_INT32 = struct.Struct(">i")
_TOPIC_FILTER_TYPES = frozenset({"SINGLE_TAG", "MULTI_TAG"})
# Deflater.BEST_COMPRESSION, as RegisterBrokerBody.encode(true) uses.
_BEST_COMPRESSION = 9


@dataclass(frozen=True)
class TopicConfig:
    """One entry of a broker's topic table (4.9.7 TopicConfig, defaults as Java's)."""

    topic_name: str
    read_queue_nums: int = 16
    write_queue_nums: int = 16
    perm: int = 6  # 4 READ | 2 WRITE
    topic_filter_type: str = "SINGLE_TAG"
    topic_sys_flag: int = 0
    order: bool = False


@dataclass(frozen=True)
class DataVersion:
    """A broker's topic-table version; the nameserver rebuilds queue data when it changes."""

    timestamp_ms: int
    counter: int


@dataclass(frozen=True)
class RegisterBrokerBody:
    """RegisterBrokerBody: the topic config wrapper (version + table) and filter servers."""

    data_version: DataVersion
    topic_configs: tuple[TopicConfig, ...] = ()
    filter_servers: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegisterBrokerRequest:
    """Everything a REGISTER_BROKER carries."""

    cluster_name: str
    broker_name: str
    broker_addr: str
    broker_id: int
    ha_server_addr: str
    body: RegisterBrokerBody
    compressed: bool = False


@dataclass(frozen=True)
class RegisterBrokerResult:
    """The reply's header: the group's live master (for a non-zero id), else None."""

    master_addr: str | None
    ha_server_addr: str | None


# --- body ------------------------------------------------------------------------------------


def _topic_json(topic: TopicConfig) -> dict[str, Any]:
    return {
        "order": topic.order,
        "perm": topic.perm,
        "readQueueNums": topic.read_queue_nums,
        "topicFilterType": topic.topic_filter_type,
        "topicName": topic.topic_name,
        "topicSysFlag": topic.topic_sys_flag,
        "writeQueueNums": topic.write_queue_nums,
    }


def _version_json(version: DataVersion) -> dict[str, Any]:
    return {"counter": version.counter, "timestamp": version.timestamp_ms}


def _check_topic(topic: TopicConfig) -> None:
    for name in ("read_queue_nums", "write_queue_nums", "perm", "topic_sys_flag"):
        value = getattr(topic, name)
        if isinstance(value, bool) or not isinstance(value, int) or not -(2**31) <= value < 2**31:
            raise ValueError(f"topic {topic.topic_name!r}: {name}={value!r} is not an int32")
    if topic.topic_filter_type not in _TOPIC_FILTER_TYPES:
        raise ValueError(f"topic {topic.topic_name!r}: unknown filter type")
    if not topic.topic_name or " " in topic.topic_name:
        # TopicConfig.encode joins its fields with spaces: such a name cannot be decoded.
        raise ValueError(f"topic name {topic.topic_name!r} is empty or has a space")


def encode_register_body(body: RegisterBrokerBody, *, compressed: bool) -> bytes:
    """The body as RegisterBrokerBody.encode(compressed) writes it."""
    for topic in body.topic_configs:
        _check_topic(topic)
    names = [t.topic_name for t in body.topic_configs]
    if len(set(names)) != len(names):
        raise ValueError("a topic appears twice in the topic table")
    filters = json.dumps(list(body.filter_servers), separators=(",", ":"), ensure_ascii=False)
    if not compressed:
        doc = {
            "filterServerList": list(body.filter_servers),
            "topicConfigSerializeWrapper": {
                "dataVersion": _version_json(body.data_version),
                "topicConfigTable": {t.topic_name: _topic_json(t) for t in body.topic_configs},
            },
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    parts: list[bytes] = []

    def part(data: bytes) -> None:
        parts.append(_INT32.pack(len(data)))
        parts.append(data)

    part(json.dumps(_version_json(body.data_version), separators=(",", ":")).encode("utf-8"))
    parts.append(_INT32.pack(len(body.topic_configs)))
    for t in body.topic_configs:
        encoded = (
            f"{t.topic_name} {t.read_queue_nums} {t.write_queue_nums} {t.perm} "
            f"{t.topic_filter_type}"
        )
        part(encoded.encode("utf-8"))
    part(filters.encode("utf-8"))
    return zlib.compress(b"".join(parts), _BEST_COMPRESSION)


def _data_version(value: Any, where: str) -> DataVersion:
    doc = _expect(value, dict, where)
    timestamp = _expect(doc.get("timestamp", 0), int, f"{where}.timestamp")
    counter = _expect(doc.get("counter", 0), int, f"{where}.counter")
    return DataVersion(timestamp_ms=timestamp, counter=counter)


def _topic_from_json(name: str, value: Any, where: str) -> TopicConfig:
    doc = _expect(value, dict, where)
    topic = TopicConfig(
        topic_name=_expect(doc.get("topicName", name), str, f"{where}.topicName"),
        read_queue_nums=_int32(doc.get("readQueueNums", 16), f"{where}.readQueueNums"),
        write_queue_nums=_int32(doc.get("writeQueueNums", 16), f"{where}.writeQueueNums"),
        perm=_int32(doc.get("perm", 6), f"{where}.perm"),
        topic_filter_type=_expect(
            doc.get("topicFilterType", "SINGLE_TAG"), str, f"{where}.topicFilterType"
        ),
        topic_sys_flag=_int32(doc.get("topicSysFlag", 0), f"{where}.topicSysFlag"),
        order=_expect(doc.get("order", False), bool, f"{where}.order"),
    )
    if topic.topic_name != name:
        raise ProtocolError(f"{where}: table key {name!r} names topic {topic.topic_name!r}")
    return topic


def _wrapper(doc: Any, where: str) -> tuple[DataVersion, tuple[TopicConfig, ...]]:
    wrapper = _expect(doc, dict, where)
    version = _data_version(wrapper.get("dataVersion", {}), f"{where}.dataVersion")
    table = _expect(wrapper.get("topicConfigTable", {}), dict, f"{where}.topicConfigTable")
    topics = tuple(
        _topic_from_json(name, value, f"{where}.topicConfigTable[{name!r}]")
        for name, value in table.items()
    )
    return version, topics


def parse_topic_config_wrapper(body: bytes) -> RegisterBrokerBody:
    """A GET_ALL_TOPIC_CONFIG reply body (TopicConfigSerializeWrapper) as a register body: the
    broker's own topic table and data version, no filter servers."""
    if not body:
        raise ProtocolError("topic config wrapper: empty body")
    version, topics = _wrapper(_fastjson.loads(body), "topic config wrapper")
    return RegisterBrokerBody(data_version=version, topic_configs=topics)


def _inflate(data: bytes) -> bytes:
    try:
        return zlib.decompress(data)
    except zlib.error as exc:
        raise ProtocolError(f"compressed register body: {exc}") from None


def decode_register_body(data: bytes, *, compressed: bool) -> RegisterBrokerBody:
    """A body as RegisterBrokerBody.decode(data, compressed) reads it."""
    if not compressed:
        doc = _expect(_fastjson.loads(data), dict, "register body")
        version, topics = _wrapper(
            doc.get("topicConfigSerializeWrapper", {}), "register body.topicConfigSerializeWrapper"
        )
        filters = _expect(doc.get("filterServerList", []), list, "register body.filterServerList")
        return RegisterBrokerBody(
            data_version=version,
            topic_configs=topics,
            filter_servers=tuple(_expect(f, str, "filterServerList entry") for f in filters),
        )
    raw = _inflate(data)
    at = 0

    def take(size: int, what: str) -> bytes:
        nonlocal at
        if size < 0 or at + size > len(raw):
            raise ProtocolError(f"compressed register body: {what} runs past the end")
        chunk = raw[at : at + size]
        at += size
        return chunk

    def take_int(what: str) -> int:
        value: int = _INT32.unpack(take(4, what))[0]
        return value

    def take_part(what: str) -> bytes:
        return take(take_int(f"{what} length"), what)

    version = _data_version(_fastjson.loads(take_part("data version")), "data version")
    count = take_int("topic count")
    if count < 0:
        raise ProtocolError(f"compressed register body: topic count {count}")
    found: list[TopicConfig] = []
    for i in range(count):
        text = take_part(f"topic {i}").decode("utf-8", "replace")
        fields = text.split(" ")
        if len(fields) != 5:
            raise ProtocolError(f"compressed register body: topic {i} is {text[:80]!r}")
        name, read, write, perm, filter_type = fields
        numbers = [_java_long(v) for v in (read, write, perm)]
        if None in numbers:
            raise ProtocolError(f"compressed register body: topic {i} is {text[:80]!r}")
        r, w, p = (int(n or 0) for n in numbers)
        found.append(TopicConfig(name, r, w, p, filter_type))
    filters = _expect(_fastjson.loads(take_part("filter server list")), list, "filter server list")
    if at != len(raw):
        raise ProtocolError(f"compressed register body: {len(raw) - at} bytes after the end")
    return RegisterBrokerBody(
        data_version=version,
        topic_configs=tuple(found),
        filter_servers=tuple(_expect(f, str, "filter server list entry") for f in filters),
    )


# --- request and reply -----------------------------------------------------------------------


def _crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0x7FFFFFFF  # UtilAll.crc32


def register_broker_command(request: RegisterBrokerRequest) -> RemotingCommand:
    """The REGISTER_BROKER command (opaque set when sent)."""
    if isinstance(request.broker_id, bool) or not 0 <= request.broker_id < 2**63:
        raise ValueError(f"broker id {request.broker_id!r} is not a non-negative long")
    body = encode_register_body(request.body, compressed=request.compressed)
    fields = {
        "brokerAddr": request.broker_addr,
        "brokerId": str(request.broker_id),
        "brokerName": request.broker_name,
        "bodyCrc32": str(_crc32(body)),
        "clusterName": request.cluster_name,
        "compressed": "true" if request.compressed else "false",
        "haServerAddr": request.ha_server_addr,
    }
    return RemotingCommand(code=RequestCode.REGISTER_BROKER, ext_fields=fields, body=body)


def _field(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name)
    if value is None:
        raise ProtocolError(f"REGISTER_BROKER without {name}")
    return value


def parse_register_request(cmd: RemotingCommand) -> RegisterBrokerRequest:
    """What a REGISTER_BROKER command says, its CRC checked as the nameserver checks it."""
    if cmd.code != RequestCode.REGISTER_BROKER:
        raise ProtocolError(f"request code {cmd.code} is not REGISTER_BROKER")
    fields = cmd.ext_fields
    broker_id = _java_long(_field(fields, "brokerId"))
    if broker_id is None:
        raise ProtocolError(f"REGISTER_BROKER brokerId={fields['brokerId']!r}")
    crc = _java_long(fields.get("bodyCrc32", "0"))
    if crc is None:
        raise ProtocolError(f"REGISTER_BROKER bodyCrc32={fields['bodyCrc32']!r}")
    if crc != 0 and crc != _crc32(cmd.body):
        raise ProtocolError("REGISTER_BROKER body does not match its bodyCrc32")
    compressed = fields.get("compressed", "false").lower() == "true"  # Boolean.parseBoolean
    body = (
        decode_register_body(cmd.body, compressed=compressed)
        if cmd.body
        else RegisterBrokerBody(data_version=DataVersion(0, 0))
    )
    return RegisterBrokerRequest(
        cluster_name=_field(fields, "clusterName"),
        broker_name=_field(fields, "brokerName"),
        broker_addr=_field(fields, "brokerAddr"),
        broker_id=broker_id,
        ha_server_addr=_field(fields, "haServerAddr"),
        body=body,
        compressed=compressed,
    )


async def register_broker(
    client: Requester, request: RegisterBrokerRequest, *, timeout_seconds: float
) -> RegisterBrokerResult:
    """Register ``request.broker_addr`` under ``request.broker_id`` on the nameserver
    ``client`` talks to, through ``client``'s connection: the entry lives as long as that
    connection does, unless the address registers again elsewhere (see the module notes)."""
    cmd = register_broker_command(request)
    reply = await client.request(
        cmd.code, cmd.ext_fields, cmd.body, timeout_seconds=timeout_seconds
    )
    check_reply(reply, RequestCode.REGISTER_BROKER)
    return RegisterBrokerResult(
        master_addr=reply.ext_fields.get("masterAddr") or None,
        ha_server_addr=reply.ext_fields.get("haServerAddr") or None,
    )


async def get_all_topic_config(client: Requester, *, timeout_seconds: float) -> RegisterBrokerBody:
    """A broker's topic table and data version (GET_ALL_TOPIC_CONFIG), as a register body."""
    reply = await client.request(RequestCode.GET_ALL_TOPIC_CONFIG, timeout_seconds=timeout_seconds)
    check_reply(reply, RequestCode.GET_ALL_TOPIC_CONFIG)
    return parse_topic_config_wrapper(reply.body)
