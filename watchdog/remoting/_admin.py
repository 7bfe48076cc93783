"""Typed RocketMQ admin calls (nameserver and broker) built on RemotingClient."""

# Every call raises RemoteError for a non-zero response code it does not expect, and
# ProtocolError for a reply whose body or ext fields are not what the call expects; the
# parsing never lets a KeyError/ValueError/TypeError out.

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Any, Protocol

from . import _fastjson
from ._codec import RemotingCommand
from ._errors import AclRefused, ProtocolError, RemoteError, acl_refusal

__all__ = [
    "RequestCode",
    "ResponseCode",
    "ClusterInfo",
    "QueueData",
    "TopicRoute",
    "Requester",
    "invoke",
    "check_reply",
    "broker_runtime_info_of",
    "broker_config_of",
    "parse_cluster_info",
    "parse_topic_route",
    "parse_kv_table",
    "parse_properties",
    "format_properties",
    "get_cluster_info",
    "get_topic_route",
    "get_kv_config",
    "put_kv_config",
    "delete_kv_config",
    "get_broker_runtime_info",
    "get_broker_config",
    "update_broker_config",
    "wipe_write_perm_of_broker",
    "add_write_perm_of_broker",
    "get_max_offset",
]


class RequestCode(IntEnum):
    """Request codes (4.9.7 RequestCode) this project sends or may meet."""

    SEND_MESSAGE = 10
    PULL_MESSAGE = 11
    UPDATE_AND_CREATE_TOPIC = 17
    GET_ALL_TOPIC_CONFIG = 21
    UPDATE_BROKER_CONFIG = 25
    GET_BROKER_CONFIG = 26
    GET_BROKER_RUNTIME_INFO = 28
    GET_MAX_OFFSET = 30
    GET_MIN_OFFSET = 31
    HEART_BEAT = 34
    CHECK_TRANSACTION_STATE = 39
    NOTIFY_CONSUMER_IDS_CHANGED = 40
    PUT_KV_CONFIG = 100
    GET_KV_CONFIG = 101
    DELETE_KV_CONFIG = 102
    REGISTER_BROKER = 103
    UNREGISTER_BROKER = 104
    GET_ROUTEINFO_BY_TOPIC = 105
    GET_BROKER_CLUSTER_INFO = 106
    UPDATE_AND_CREATE_SUBSCRIPTIONGROUP = 200
    WIPE_WRITE_PERM_OF_BROKER = 205
    DELETE_SUBSCRIPTIONGROUP = 207
    DELETE_TOPIC_IN_BROKER = 215
    GET_KVLIST_BY_NAMESPACE = 219
    GET_CONSUMER_RUNNING_INFO = 307
    SEND_MESSAGE_V2 = 310
    UPDATE_NAMESRV_CONFIG = 318
    GET_NAMESRV_CONFIG = 319
    ADD_WRITE_PERM_OF_BROKER = 327


class ResponseCode(IntEnum):
    """Response codes (4.9.7 RemotingSysResponseCode + ResponseCode)."""

    SUCCESS = 0
    SYSTEM_ERROR = 1
    SYSTEM_BUSY = 2
    REQUEST_CODE_NOT_SUPPORTED = 3
    TRANSACTION_FAILED = 4
    FLUSH_DISK_TIMEOUT = 10
    SLAVE_NOT_AVAILABLE = 11
    FLUSH_SLAVE_TIMEOUT = 12
    MESSAGE_ILLEGAL = 13
    SERVICE_NOT_AVAILABLE = 14
    VERSION_NOT_SUPPORTED = 15
    NO_PERMISSION = 16
    TOPIC_NOT_EXIST = 17
    TOPIC_EXIST_ALREADY = 18
    PULL_NOT_FOUND = 19
    PULL_RETRY_IMMEDIATELY = 20
    PULL_OFFSET_MOVED = 21
    QUERY_NOT_FOUND = 22
    SUBSCRIPTION_PARSE_FAILED = 23
    SUBSCRIPTION_NOT_EXIST = 24
    SUBSCRIPTION_NOT_LATEST = 25
    SUBSCRIPTION_GROUP_NOT_EXIST = 26
    FILTER_DATA_NOT_EXIST = 27
    FILTER_DATA_NOT_LATEST = 28
    CONSUMER_NOT_ONLINE = 206
    CONSUME_MSG_TIMEOUT = 207
    NO_MESSAGE = 208
    FLOW_CONTROL = 215


class Requester(Protocol):
    """What the typed calls need from a client (RemotingClient satisfies it)."""

    async def request(
        self,
        code: int,
        ext_fields: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        timeout_seconds: float,
    ) -> RemotingCommand: ...


@dataclass(frozen=True)
class ClusterInfo:
    """GET_BROKER_CLUSTER_INFO as one nameserver sees it."""

    broker_addrs: Mapping[str, Mapping[int, str]]  # brokerName -> {brokerId: addr}
    broker_cluster: Mapping[str, str]  # brokerName -> cluster name
    cluster_brokers: Mapping[str, tuple[str, ...]]  # cluster -> brokerNames

    def registrations(self) -> Iterator[tuple[str, int, str]]:
        """(brokerName, brokerId, addr) for every registered broker, sorted."""
        for name in sorted(self.broker_addrs):
            for broker_id, addr in sorted(self.broker_addrs[name].items()):
                yield name, broker_id, addr


@dataclass(frozen=True)
class QueueData:
    broker_name: str
    perm: int  # 4 READ | 2 WRITE | 1 INHERIT; 6 = read-write
    read_queue_nums: int
    write_queue_nums: int
    topic_sys_flag: int = 0

    @property
    def is_writable(self) -> bool:
        return bool(self.perm & 2)

    @property
    def is_readable(self) -> bool:
        return bool(self.perm & 4)


@dataclass(frozen=True)
class TopicRoute:
    broker_addrs: Mapping[str, Mapping[int, str]]  # brokerName -> {brokerId: addr}
    queue_datas: tuple[QueueData, ...]


# --- generic call ---------------------------------------------------------------------------


async def invoke(
    client: Requester,
    code: int,
    ext_fields: Mapping[str, str] | None = None,
    body: bytes = b"",
    *,
    timeout_seconds: float,
    accept_codes: tuple[int, ...] = (ResponseCode.SUCCESS,),
) -> RemotingCommand:
    """One request; a response code outside ``accept_codes`` raises RemoteError."""
    reply = await client.request(code, ext_fields, body, timeout_seconds=timeout_seconds)
    return check_reply(reply, code, accept_codes)


def check_reply(
    reply: RemotingCommand,
    code: int,
    accept_codes: tuple[int, ...] = (ResponseCode.SUCCESS,),
) -> RemotingCommand:
    """``reply`` to a request with ``code``; RemoteError if its code is not in ``accept_codes``
    (AclRefused when it is a broker's ACL refusal)."""
    if reply.code not in accept_codes:
        if acl_refusal(reply.code, reply.remark) is not None:
            raise AclRefused(reply.code, reply.remark, int(code))
        raise RemoteError(reply.code, reply.remark, int(code))
    return reply


# --- body parsing (pure; tested on real captured bodies) ---------------------------------------


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ProtocolError(f"{where} should be {name}, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_ASCII_DIGITS = frozenset("0123456789")


def _java_long(text: str, *, signed: bool = True) -> int | None:
    """``text`` as Java's Long.parseLong reads it (ASCII digits, optional '-'), else None.

    Python's int() also takes ' 7', '+7', '1_0' and other scripts' digits (int('\\u0661') is 1),
    so a garbled number could pass for a broker id or an offset it does not spell.
    """
    digits = text[1:] if signed and text.startswith("-") else text
    if not digits or len(digits) > 19 or not _ASCII_DIGITS.issuperset(digits):
        return None
    value = int(text)
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def _broker_id(key: str, where: str) -> int:
    value = _java_long(key)
    if value is None:
        raise ProtocolError(f"{where} key {_short(key)} is not an integer broker id")
    return value


def _broker_addrs(value: Any, where: str) -> Mapping[int, str]:
    addrs = _expect(value, dict, where)
    result: dict[int, str] = {}
    for k, v in addrs.items():
        broker_id = _broker_id(k, where)
        if broker_id in result:  # "1" and "01": which address is broker 1?
            raise ProtocolError(f"{where} names broker id {broker_id} twice")
        result[broker_id] = _expect(v, str, f"{where}[{k}]")
    return MappingProxyType(result)


def _int32(value: Any, where: str) -> int:
    number: int = _expect(value, int, where)
    if not _INT32_MIN <= number <= _INT32_MAX:
        raise ProtocolError(f"{where} should be a 32-bit integer, got {_short(number)}")
    return number


def _json_body(body: bytes, what: str) -> Any:
    if not body:
        raise ProtocolError(f"{what}: empty body")
    try:
        return _fastjson.loads(body)
    except ProtocolError as exc:
        raise ProtocolError(f"{what}: {exc}") from None


def parse_cluster_info(body: bytes) -> ClusterInfo:
    """Parse a GET_BROKER_CLUSTER_INFO body (fastjson, bare integer broker-id keys)."""
    doc = _expect(_json_body(body, "cluster info"), dict, "cluster info body")
    table = _expect(doc.get("brokerAddrTable"), dict, "cluster info brokerAddrTable")
    clusters = _expect(doc.get("clusterAddrTable", {}), dict, "cluster info clusterAddrTable")
    cluster_brokers: dict[str, tuple[str, ...]] = {}
    broker_cluster: dict[str, str] = {}
    for cluster, names in clusters.items():
        names = _expect(names, list, f"clusterAddrTable[{cluster!r}]")
        cluster_brokers[cluster] = tuple(
            _expect(n, str, f"clusterAddrTable[{cluster!r}] entry") for n in names
        )
        for name in cluster_brokers[cluster]:
            broker_cluster[name] = cluster
    broker_addrs: dict[str, Mapping[int, str]] = {}
    for name, data in table.items():
        where = f"brokerAddrTable[{name!r}]"
        data = _expect(data, dict, where)
        broker_addrs[name] = _broker_addrs(data.get("brokerAddrs", {}), f"{where}.brokerAddrs")
        cluster = data.get("cluster")
        if cluster is not None:
            broker_cluster[name] = _expect(cluster, str, f"{where}.cluster")
    return ClusterInfo(
        broker_addrs=MappingProxyType(broker_addrs),
        broker_cluster=MappingProxyType(broker_cluster),
        cluster_brokers=MappingProxyType(cluster_brokers),
    )


def parse_topic_route(body: bytes) -> TopicRoute:
    """Parse a GET_ROUTEINFO_BY_TOPIC body, standard or fastjson form, pre- or post-4.9.0."""
    doc = _expect(_json_body(body, "topic route"), dict, "topic route body")
    broker_addrs: dict[str, Mapping[int, str]] = {}
    # Both lists are always present: the nameserver answers TOPIC_NOT_EXIST rather than an
    # empty route, so a reply without them is not a route at all.
    for i, data in enumerate(_expect(doc.get("brokerDatas"), list, "brokerDatas")):
        data = _expect(data, dict, f"brokerDatas[{i}]")
        name = _expect(data.get("brokerName"), str, f"brokerDatas[{i}].brokerName")
        broker_addrs[name] = _broker_addrs(data.get("brokerAddrs", {}), f"brokerDatas[{i}]")
    queues: list[QueueData] = []
    for i, data in enumerate(_expect(doc.get("queueDatas"), list, "queueDatas")):
        where = f"queueDatas[{i}]"
        data = _expect(data, dict, where)
        # The field was spelled topicSynFlag before 4.9.0.
        sys_flag = data.get("topicSysFlag", data.get("topicSynFlag", 0))
        queues.append(
            QueueData(
                broker_name=_expect(data.get("brokerName"), str, f"{where}.brokerName"),
                perm=_int32(data.get("perm"), f"{where}.perm"),
                read_queue_nums=_int32(data.get("readQueueNums"), f"{where}.readQueueNums"),
                write_queue_nums=_int32(data.get("writeQueueNums"), f"{where}.writeQueueNums"),
                topic_sys_flag=_int32(sys_flag, f"{where}.topicSysFlag"),
            )
        )
    return TopicRoute(broker_addrs=MappingProxyType(broker_addrs), queue_datas=tuple(queues))


def parse_kv_table(body: bytes, what: str = "kv table") -> dict[str, str]:
    """Parse a KVTable body ``{"table": {k: v}}``; every value must be a string."""
    doc = _expect(_json_body(body, what), dict, f"{what} body")
    table = _expect(doc.get("table"), dict, f"{what} 'table'")
    # The common case checked in one pass; the per-value check below only names the culprit.
    if set(map(type, table.values())) <= {str}:  # json.loads makes no str subclasses
        return dict(table)
    return {k: _expect(v, str, f"{what}[{k!r}]") for k, v in table.items()}


def parse_properties(text: str | bytes, *, java_escapes: bool = False) -> dict[str, str]:
    """Parse a Java-properties text body.

    The 4.9.7 broker and nameserver write their config with MixAll.properties2String: plain
    ``key=value\\n`` lines, nothing escaped (a value keeps its backslashes verbatim). That is
    the default reading, and a line without ``=`` is a ProtocolError. With ``java_escapes`` the
    text is read the way java.util.Properties.load reads what Properties.store writes:
    ``=``/``:``/whitespace separators, ``\\``-escapes, ``\\uXXXX`` and continuation lines.
    Blank lines and lines starting with ``#`` or ``!`` are comments in both modes.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"properties body is not UTF-8: {exc}") from None
    if java_escapes:
        return _parse_java_properties(text)
    result: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.rstrip("\r").lstrip(" \t\f")
        if not stripped or stripped[0] in "#!":
            continue
        key, sep, value = stripped.partition("=")
        if not sep or not key.strip():
            raise ProtocolError(f"properties line {number} is not key=value: {_short(line)}")
        result[key.rstrip(" \t\f")] = value.rstrip("\r")
    return result


_UNESCAPE = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _logical_lines(text: str) -> Iterator[str]:
    """Properties.load's logical lines: comments dropped, backslash-newline joined."""
    current: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.lstrip(" \t\f")
        if not current and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            current.append(line[:-1])
            continue
        current.append(line)
        yield "".join(current)
        current = []
    if current:
        yield "".join(current)


def _unescape(text: str) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "\\" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u":
            digits = text[i + 2 : i + 6]
            if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise ProtocolError(f"malformed \\uxxxx escape in properties: {_short(text)}")
            out.append(chr(int(digits, 16)))
            i += 6
        else:
            out.append(_UNESCAPE.get(nxt, nxt))
            i += 2
    result = "".join(out)
    if any("\ud800" <= c <= "\udfff" for c in result):
        # \uXXXX escapes are UTF-16 code units: join surrogate pairs into one character.
        result = result.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return result


def _parse_java_properties(text: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in _logical_lines(text):
        i, n = 0, len(line)
        while i < n:  # the key ends at the first unescaped '=', ':' or whitespace
            ch = line[i]
            if ch == "\\":
                i += 2
                continue
            if ch in "=: \t\f":
                break
            i += 1
        key = line[:i]
        rest = line[i:].lstrip(" \t\f")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t\f")
        result[_unescape(key)] = _unescape(rest)
    return result


def _escape(text: str, *, is_key: bool) -> str:
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch == " ":
            out.append("\\ " if is_key or i == 0 else " ")
        elif ch in "\\=:#!":
            out.append("\\" + ch)
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\f":
            out.append("\\f")
        elif " " < ch <= "~":
            out.append(ch)
        else:
            # Properties.load reads ISO-8859-1, so anything outside printable ASCII is \uXXXX.
            data = ch.encode("utf-16-be")
            out.extend(f"\\u{data[j : j + 2].hex().upper()}" for j in range(0, len(data), 2))
    return "".join(out)


def format_properties(values: Mapping[str, str]) -> bytes:
    """Properties text as Properties.store writes it (escaped, ASCII), for UPDATE_BROKER_CONFIG."""
    lines = [f"{_escape(k, is_key=True)}={_escape(v, is_key=False)}\n" for k, v in values.items()]
    return "".join(lines).encode("ascii")


# --- nameserver calls ------------------------------------------------------------------------


async def get_cluster_info(client: Requester, *, timeout_seconds: float) -> ClusterInfo:
    reply = await invoke(
        client, RequestCode.GET_BROKER_CLUSTER_INFO, timeout_seconds=timeout_seconds
    )
    return parse_cluster_info(reply.body)


async def get_topic_route(client: Requester, topic: str, *, timeout_seconds: float) -> TopicRoute:
    """Route of ``topic``; an unknown topic raises RemoteError with code 17 TOPIC_NOT_EXIST."""
    # The client sends version 407, and 4.9.4+ nameservers then answer in standard JSON; older
    # ones ignore both switches and answer in fastjson's dialect, which the parser also reads.
    reply = await invoke(
        client,
        RequestCode.GET_ROUTEINFO_BY_TOPIC,
        {"topic": topic, "acceptStandardJsonOnly": "true"},
        timeout_seconds=timeout_seconds,
    )
    return parse_topic_route(reply.body)


async def get_kv_config(
    client: Requester, namespace: str, key: str, *, timeout_seconds: float
) -> str | None:
    """The nameserver's KV value, or None when it has none (QUERY_NOT_FOUND)."""
    reply = await invoke(
        client,
        RequestCode.GET_KV_CONFIG,
        {"namespace": namespace, "key": key},
        timeout_seconds=timeout_seconds,
        accept_codes=(ResponseCode.SUCCESS, ResponseCode.QUERY_NOT_FOUND),
    )
    if reply.code == ResponseCode.QUERY_NOT_FOUND:
        return None
    value = reply.ext_fields.get("value")
    if value is None:
        raise ProtocolError(f"GET_KV_CONFIG {namespace}/{key}: success reply without a value")
    return value


async def put_kv_config(
    client: Requester, namespace: str, key: str, value: str, *, timeout_seconds: float
) -> None:
    await invoke(
        client,
        RequestCode.PUT_KV_CONFIG,
        {"namespace": namespace, "key": key, "value": value},
        timeout_seconds=timeout_seconds,
    )


async def delete_kv_config(
    client: Requester, namespace: str, key: str, *, timeout_seconds: float
) -> None:
    """Delete a KV entry; deleting an absent key succeeds too (as the nameserver does)."""
    await invoke(
        client,
        RequestCode.DELETE_KV_CONFIG,
        {"namespace": namespace, "key": key},
        timeout_seconds=timeout_seconds,
    )


def _int_ext(reply: RemotingCommand, name: str, what: str) -> int:
    """A count or offset ext field: a non-negative Java long written in ASCII digits."""
    value = reply.ext_fields.get(name)
    if value is None:
        raise ProtocolError(f"{what}: reply has no {name!r} field")
    number = _java_long(value, signed=False)
    if number is None:
        raise ProtocolError(f"{what}: {name}={_short(value)} is not a non-negative integer")
    return number


async def wipe_write_perm_of_broker(
    client: Requester, broker_name: str, *, timeout_seconds: float
) -> int:
    """Clear the WRITE bit of ``broker_name``'s queues on this nameserver; returns topic count."""
    reply = await invoke(
        client,
        RequestCode.WIPE_WRITE_PERM_OF_BROKER,
        {"brokerName": broker_name},
        timeout_seconds=timeout_seconds,
    )
    return _int_ext(reply, "wipeTopicCount", "WIPE_WRITE_PERM_OF_BROKER")


async def add_write_perm_of_broker(
    client: Requester, broker_name: str, *, timeout_seconds: float
) -> int:
    """Set ``broker_name``'s queues to read-write on this nameserver; returns topic count."""
    reply = await invoke(
        client,
        RequestCode.ADD_WRITE_PERM_OF_BROKER,
        {"brokerName": broker_name},
        timeout_seconds=timeout_seconds,
    )
    return _int_ext(reply, "addTopicCount", "ADD_WRITE_PERM_OF_BROKER")


# --- broker calls ----------------------------------------------------------------------------


async def get_broker_runtime_info(client: Requester, *, timeout_seconds: float) -> dict[str, str]:
    reply = await client.request(
        RequestCode.GET_BROKER_RUNTIME_INFO, timeout_seconds=timeout_seconds
    )
    return broker_runtime_info_of(reply)


def broker_runtime_info_of(reply: RemotingCommand) -> dict[str, str]:
    """The table of a GET_BROKER_RUNTIME_INFO reply (RemoteError for an error code)."""
    check_reply(reply, RequestCode.GET_BROKER_RUNTIME_INFO)
    table = parse_kv_table(reply.body, "broker runtime info")
    # Readers of the table int() the offsets (probe, executor, drill). A broker writes them
    # with String.valueOf(long); the max offset is never negative (0 for an empty log), the
    # min offset is -1 while the log has no file yet. Anything else is not an offset.
    for key, signed in _RUNTIME_OFFSETS:
        value = table.get(key)
        if value is not None and _java_long(value, signed=signed) is None:
            raise ProtocolError(f"broker runtime info: {key}={_short(value)} is not an offset")
    return table


_RUNTIME_OFFSETS = (("commitLogMaxOffset", False), ("commitLogMinOffset", True))


async def get_broker_config(client: Requester, *, timeout_seconds: float) -> dict[str, str]:
    """The broker's merged config (BrokerConfig, Netty configs, MessageStoreConfig)."""
    reply = await client.request(RequestCode.GET_BROKER_CONFIG, timeout_seconds=timeout_seconds)
    return broker_config_of(reply)


def broker_config_of(reply: RemotingCommand) -> dict[str, str]:
    """The properties of a GET_BROKER_CONFIG reply (RemoteError for an error code)."""
    check_reply(reply, RequestCode.GET_BROKER_CONFIG)
    config = parse_properties(reply.body)
    if not config:
        raise ProtocolError("broker config: empty body")
    # The probe reads the broker's own id from here (String.valueOf(long) on the broker).
    broker_id = config.get("brokerId")
    if broker_id is not None and _java_long(broker_id) is None:
        raise ProtocolError(f"broker config: brokerId={_short(broker_id)} is not an integer")
    return config


async def update_broker_config(
    client: Requester, values: Mapping[str, str], *, timeout_seconds: float
) -> None:
    """Change broker config keys (only keys the broker already has are applied, then persisted)."""
    if not values:
        raise ValueError("update_broker_config needs at least one key")
    await invoke(
        client,
        RequestCode.UPDATE_BROKER_CONFIG,
        body=format_properties(values),
        timeout_seconds=timeout_seconds,
    )


async def get_max_offset(
    client: Requester, topic: str, queue_id: int, *, timeout_seconds: float
) -> int:
    """Next logical offset of one queue of ``topic`` on this broker."""
    reply = await invoke(
        client,
        RequestCode.GET_MAX_OFFSET,
        {"topic": topic, "queueId": str(queue_id)},
        timeout_seconds=timeout_seconds,
    )
    return _int_ext(reply, "offset", "GET_MAX_OFFSET")
