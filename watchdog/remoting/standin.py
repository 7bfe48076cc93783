"""A stand-in RocketMQ server: asyncio nameservers and brokers on local ports, with fault modes."""

# Used by unit tests, chaos tests ("a broker answering garbage") and scale benchmarks (thousands
# of brokers in one process), so each node is a bare asyncio.Protocol with no task per
# connection, and replies are built from small dicts only when asked for.
#
# Fidelity notes, checked against real 4.9.7 processes:
# - replies use the request's serialize type and echo its opaque, flag bit0 set;
# - the nameserver does not answer unknown codes at all; the broker answers code 3;
# - GET_BROKER_CLUSTER_INFO uses fastjson's bare integer keys; GET_ROUTEINFO_BY_TOPIC switches to
#   standard JSON for version >= 401 or acceptStandardJsonOnly=true, as 4.9.4+ does;
# - GET_BROKER_CONFIG is unescaped key=value lines with a DataVersion in ext "version";
# - UPDATE_BROKER_CONFIG merges only keys that already exist;
# - a broker with `acl_accounts` checks each request as PlainPermissionManager.validate does (no
#   white addresses): access key, signature, admin flag for the admin codes; a refusal is code 1
#   with the AclException remark the real broker sends.
#
# Usage:
#
#     server = StandinServer()
#     ns = server.add_namesrv()
#     master = server.add_broker("broker-a", 0, register_with=[ns])
#     async with server:                  # start(): every node listens, brokers get registered
#         await master.set_fault("hang")  # later nodes: add_*() then await server.start()

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Literal, get_args

from ..model import Secret
from . import _fastjson
from ._acl import ACCESS_KEY, SIGNATURE, acl_signature
from ._admin import RequestCode, ResponseCode, parse_properties
from ._codec import FLAG_ONEWAY, FLAG_RESPONSE, FrameDecoder, RemotingCommand, encode_frame
from ._errors import ProtocolError

__all__ = [
    "FaultMode",
    "FAULT_MODES",
    "StandinNode",
    "StandinNamesrv",
    "StandinBroker",
    "StandinServer",
]

FaultMode = Literal["ok", "hang", "garbage", "error", "nonsense", "close", "refuse"]
FAULT_MODES: tuple[str, ...] = get_args(FaultMode)

# A wrong-shaped but well-formed reply: valid JSON, no field any typed call expects, and not
# key=value text either, so every parser must reject it rather than return something empty.
NONSENSE_BODY = b'{"nonsense":[1,2,3]}'
ReplyDelay = float | Callable[[RemotingCommand], float]


class _ServerConnection(asyncio.Protocol):
    __slots__ = ("node", "transport", "decoder")

    def __init__(self, node: StandinNode) -> None:
        self.node = node
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.node.is_listening:
            # Accepted just before the node stopped or started refusing: a dead port answers no one.
            transport.abort()
            return
        self.node.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.node.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            commands = self.decoder.feed(data)
        except ProtocolError:
            # What the Java server does with an undecodable frame: drop the connection, no reply.
            self.node.protocol_errors += 1
            self.abort()
            return
        for cmd in commands:
            if cmd.is_response:
                self.node.client_replies.put_nowait(cmd)
            else:
                self.node._on_request(self, cmd)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class StandinNode:
    """One listening port playing one RocketMQ server; subclasses answer the codes."""

    kind = "node"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._fault: FaultMode = "ok"
        self.connections: set[_ServerConnection] = set()
        # Seconds before each reply; a callable lets tests answer requests out of order.
        self.reply_delay: ReplyDelay = 0.0
        # Bytes sent in "garbage" mode; None = random bytes led by 0xFF, a negative length
        # prefix that a correct client rejects at once instead of waiting for 4 GB.
        self.garbage: bytes | None = None
        self.requests_seen = 0
        self.protocol_errors = 0
        self.recent_requests: deque[RemotingCommand] = deque(maxlen=64)
        self.client_replies: asyncio.Queue[RemotingCommand] = asyncio.Queue()
        self.is_started = False
        self._push_opaque = 0

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def addr(self) -> str:
        return f"{self.host}:{self._port}"

    @property
    def is_listening(self) -> bool:
        return self._server is not None

    @property
    def fault(self) -> FaultMode:
        return self._fault

    async def start(self) -> None:
        self.is_started = True
        if self._fault != "refuse":
            await self._listen()

    async def _listen(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ServerConnection(self), self.host, self._port, reuse_address=True
        )
        # Port 0 means "any free port": remember the real one so "refuse" can come back to it.
        self._port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self.connections):
            conn.abort()
        if server is not None:
            await server.wait_closed()

    async def stop(self) -> None:
        self.is_started = False
        await self._unlisten()

    async def set_fault(self, mode: FaultMode) -> None:
        """Switch fault mode; "refuse" stops listening and drops open connections."""
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; expected one of {FAULT_MODES}")
        self._fault = mode
        if not self.is_started:
            return
        if mode == "refuse":
            await self._unlisten()
        else:
            await self._listen()

    # --- requests ----------------------------------------------------------------------------

    def _on_request(self, conn: _ServerConnection, cmd: RemotingCommand) -> None:
        self.requests_seen += 1
        self.recent_requests.append(cmd)
        mode = self._fault
        if mode == "hang":
            return
        if mode == "close":
            if conn.transport is not None:
                conn.transport.close()
            return
        if mode == "garbage":
            conn.write(self.garbage if self.garbage is not None else b"\xff" + os.urandom(63))
            return
        if mode == "error":
            reply: RemotingCommand | None = self._reply(
                cmd, ResponseCode.SYSTEM_ERROR, remark="standin fault: error"
            )
        elif mode == "nonsense":
            reply = self._reply(cmd, ResponseCode.SUCCESS, body=NONSENSE_BODY)
        else:
            reply = self.handle(cmd)
        if reply is None or cmd.is_oneway:
            return
        frame = encode_frame(reply)
        delay = self.reply_delay(cmd) if callable(self.reply_delay) else self.reply_delay
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, conn.write, frame)
        else:
            conn.write(frame)

    def handle(self, cmd: RemotingCommand) -> RemotingCommand | None:
        """The "ok" answer to ``cmd``, or None to send nothing."""
        return None

    @staticmethod
    def _reply(
        cmd: RemotingCommand,
        code: int,
        *,
        remark: str | None = None,
        ext_fields: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> RemotingCommand:
        return RemotingCommand(
            code=int(code),
            opaque=cmd.opaque,
            flag=FLAG_RESPONSE,
            language="JAVA",
            remark=remark,
            ext_fields=dict(ext_fields or {}),
            body=body,
            serialize_type=cmd.serialize_type,
        )

    def push_request(
        self, code: int, ext_fields: Mapping[str, str] | None = None, *, is_oneway: bool = False
    ) -> int:
        """Send a server-initiated request to every connected client; returns how many got it.

        Replies from clients land in ``client_replies``.
        """
        self._push_opaque += 1
        frame = encode_frame(
            RemotingCommand(
                code=code,
                opaque=self._push_opaque,
                flag=FLAG_ONEWAY if is_oneway else 0,
                language="JAVA",
                ext_fields=dict(ext_fields or {}),
            )
        )
        for conn in self.connections:
            conn.write(frame)
        return len(self.connections)


class StandinNamesrv(StandinNode):
    """Answers 106 cluster info, 105 routes, 100/101/102 KV config, 205/327 write perm."""

    kind = "namesrv"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self._brokers: dict[str, tuple[str, dict[int, str]]] = {}  # name -> (cluster, {id: addr})
        self._topics: dict[str, dict[str, int]] = {}  # topic -> {brokerName: perm}
        self.queue_nums = 4
        self.kv: dict[tuple[str, str], str] = {}
        self._cluster_body: bytes | None = None

    def register(
        self, broker_name: str, broker_id: int, addr: str, *, cluster: str = "DefaultCluster"
    ) -> None:
        _, addrs = self._brokers.setdefault(broker_name, (cluster, {}))
        self._brokers[broker_name] = (cluster, addrs)
        addrs[broker_id] = addr
        self._cluster_body = None

    def unregister(self, broker_name: str, broker_id: int) -> None:
        entry = self._brokers.get(broker_name)
        if entry is None:
            return
        entry[1].pop(broker_id, None)
        if not entry[1]:  # the real nameserver drops a brokerName with no addresses left
            del self._brokers[broker_name]
        self._cluster_body = None

    def registrations(self) -> dict[str, dict[int, str]]:
        return {name: dict(addrs) for name, (_, addrs) in self._brokers.items()}

    def add_topic(
        self, topic: str, broker_names: Iterable[str] | None = None, perm: int = 6
    ) -> None:
        names = list(self._brokers) if broker_names is None else list(broker_names)
        self._topics[topic] = {name: perm for name in names}

    def topic_perm(self, topic: str, broker_name: str) -> int | None:
        return self._topics.get(topic, {}).get(broker_name)

    def cluster_info_body(self) -> bytes:
        if self._cluster_body is None:
            clusters: dict[str, list[str]] = {}
            table: dict[str, object] = {}
            for name, (cluster, addrs) in self._brokers.items():
                table[name] = {"brokerAddrs": addrs.copy(), "brokerName": name, "cluster": cluster}
                clusters.setdefault(cluster, []).append(name)
            doc = {"brokerAddrTable": table, "clusterAddrTable": clusters}
            self._cluster_body = _fastjson.dumps(doc).encode("utf-8")
        return self._cluster_body

    def handle(self, cmd: RemotingCommand) -> RemotingCommand | None:
        ext = cmd.ext_fields
        code = cmd.code
        if code == RequestCode.GET_BROKER_CLUSTER_INFO:
            return self._reply(cmd, 0, body=self.cluster_info_body())
        if code == RequestCode.GET_ROUTEINFO_BY_TOPIC:
            return self._route(cmd)
        if code in (RequestCode.GET_KV_CONFIG, RequestCode.PUT_KV_CONFIG):
            namespace, key = ext.get("namespace"), ext.get("key")
            if namespace is None or key is None:
                missing = "namespace" if namespace is None else "key"
                return self._reply(cmd, 1, remark=f"the custom field <{missing}> is null")
            if code == RequestCode.PUT_KV_CONFIG:
                if "value" in ext:
                    self.kv[(namespace, key)] = ext["value"]
                return self._reply(cmd, 0)
            value = self.kv.get((namespace, key))
            if value is None:
                remark = f"No config item, Namespace: {namespace} Key: {key}"
                return self._reply(cmd, ResponseCode.QUERY_NOT_FOUND, remark=remark)
            return self._reply(cmd, 0, ext_fields={"value": value})
        if code == RequestCode.DELETE_KV_CONFIG:
            self.kv.pop((ext.get("namespace", ""), ext.get("key", "")), None)
            return self._reply(cmd, 0)
        if code in (RequestCode.WIPE_WRITE_PERM_OF_BROKER, RequestCode.ADD_WRITE_PERM_OF_BROKER):
            name = ext.get("brokerName", "")
            count = 0
            for perms in self._topics.values():
                if name in perms:
                    is_wipe = code == RequestCode.WIPE_WRITE_PERM_OF_BROKER
                    perms[name] = perms[name] & ~2 if is_wipe else 6
                    count += 1
            field = (
                "wipeTopicCount"
                if code == RequestCode.WIPE_WRITE_PERM_OF_BROKER
                else ("addTopicCount")
            )
            return self._reply(cmd, 0, ext_fields={field: str(count)})
        return None  # the real nameserver sends nothing for a code it does not know

    def _route(self, cmd: RemotingCommand) -> RemotingCommand:
        topic = cmd.ext_fields.get("topic", "")
        perms = self._topics.get(topic)
        if not perms:
            remark = f"No topic route info in name server for the topic: {topic}"
            return self._reply(cmd, ResponseCode.TOPIC_NOT_EXIST, remark=remark)
        names = [n for n in perms if n in self._brokers]
        doc = {
            "brokerDatas": [
                {
                    "brokerAddrs": self._brokers[n][1].copy(),
                    "brokerName": n,
                    "cluster": self._brokers[n][0],
                }
                for n in names
            ],
            "filterServerTable": {},
            "queueDatas": [
                {
                    "brokerName": n,
                    "perm": perms[n],
                    "readQueueNums": self.queue_nums,
                    "topicSysFlag": 0,
                    "writeQueueNums": self.queue_nums,
                }
                for n in names
            ],
        }
        is_standard = cmd.version >= 401 or cmd.ext_fields.get("acceptStandardJsonOnly") == "true"
        text = json.dumps(doc, separators=(",", ":")) if is_standard else _fastjson.dumps(doc)
        return self._reply(cmd, 0, body=text.encode("utf-8"))


_ACL_ADMIN_CODES = frozenset(
    {
        RequestCode.UPDATE_AND_CREATE_TOPIC,
        RequestCode.UPDATE_BROKER_CONFIG,
        RequestCode.DELETE_TOPIC_IN_BROKER,
        RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
        RequestCode.DELETE_SUBSCRIPTIONGROUP,
    }
)


class StandinBroker(StandinNode):
    """Answers 28 runtime info, 26 config, 25 config update, 30 max offset; other codes get 3."""

    kind = "broker"

    def __init__(
        self,
        broker_name: str,
        broker_id: int = 0,
        *,
        cluster: str = "DefaultCluster",
        role: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.cluster = cluster
        self.commitlog_max_offset = 0
        self.commitlog_min_offset = -1
        self.queue_offsets: dict[tuple[str, int], int] = {}
        self.extra_runtime: dict[str, str] = {}
        self.boot_timestamp_ms = int(time.time() * 1000)
        self._config_version = 0
        # aclEnable=true: access key -> (secret key, admin); None: no ACL.
        self.acl_accounts: dict[str, tuple[str, bool]] | None = None
        self.config: dict[str, str] = {
            "brokerClusterName": cluster,
            "brokerName": broker_name,
            "brokerId": str(broker_id),
            "brokerRole": role or ("ASYNC_MASTER" if broker_id == 0 else "SLAVE"),
            "brokerIP1": host,
            "brokerPermission": "6",
            "listenPort": str(port),
            "haListenPort": str(port + 1 if port else 0),
            "haMasterAddress": "",
            "haSlaveFallbehindMax": "268435456",
            "flushDiskType": "ASYNC_FLUSH",
            "namesrvAddr": "",
            "autoCreateTopicEnable": "true",
        }

    @property
    def broker_name(self) -> str:
        return self.config["brokerName"]

    @property
    def broker_id(self) -> int:
        return int(self.config["brokerId"])

    @broker_id.setter
    def broker_id(self, value: int) -> None:
        self.config["brokerId"] = str(value)

    @property
    def broker_role(self) -> str:
        return self.config["brokerRole"]

    @broker_role.setter
    def broker_role(self, value: str) -> None:
        self.config["brokerRole"] = value

    async def _listen(self) -> None:
        await super()._listen()
        self.config["listenPort"] = str(self.port)
        self.config["haListenPort"] = str(self.port + 1)

    def runtime_info(self) -> dict[str, str]:
        uptime = max(0, int(time.time() * 1000) - self.boot_timestamp_ms) // 1000
        table = {
            "brokerVersionDesc": "V4_9_7",
            "brokerVersion": "407",
            "bootTimestamp": str(self.boot_timestamp_ms),
            "runtime": f"[ {uptime // 86400} days, {uptime // 3600 % 24} hours, "
            f"{uptime // 60 % 60} minutes, {uptime % 60} seconds ]",
            "commitLogMaxOffset": str(self.commitlog_max_offset),
            "commitLogMinOffset": str(self.commitlog_min_offset),
            "commitLogDiskRatio": "0.14",
            "consumeQueueDiskRatio": "0.14",
            "commitLogDirCapacity": "Total : 252.0 GiB, Free : 79.2 GiB.",
            "dispatchBehindBytes": "0",
            "pageCacheLockTimeMills": "0",
            "earliestMessageTimeStamp": "-1",
            "remainHowManyDataToFlush": "0 B",
            "putTps": "0.0 0.0 0.0",
            "getTotalTps": "0.0 0.0 0.0",
            "msgPutTotalTodayNow": "0",
            "msgGetTotalTodayNow": "0",
            "sendThreadPoolQueueSize": "0",
            "sendThreadPoolQueueCapacity": "10000",
            "pullThreadPoolQueueSize": "0",
            "pullThreadPoolQueueCapacity": "100000",
        }
        table.update(self.extra_runtime)
        return table

    def config_text(self) -> bytes:
        return "".join(f"{k}={v}\n" for k, v in self.config.items()).encode("utf-8")

    def _acl_refusal(self, cmd: RemotingCommand) -> str | None:
        if self.acl_accounts is None:
            return None
        access_key = cmd.ext_fields.get(ACCESS_KEY)
        if access_key is None:
            return "No accessKey is configured"
        account = self.acl_accounts.get(access_key)
        if account is None:
            return f"No acl config for {access_key}"
        secret, is_admin = account
        fields = {k: v for k, v in cmd.ext_fields.items() if k != "_UNIQUE_KEY_QUERY"}
        if acl_signature(fields, cmd.body, Secret(secret)) != cmd.ext_fields.get(SIGNATURE):
            return f"Check signature failed for accessKey={access_key}"
        if cmd.code in _ACL_ADMIN_CODES and not is_admin:
            return (
                f"Need admin permission for request code={cmd.code}, but accessKey={access_key} "
                "is not"
            )
        return None

    def handle(self, cmd: RemotingCommand) -> RemotingCommand | None:
        code = cmd.code
        refusal = self._acl_refusal(cmd)
        if refusal is not None:
            return self._reply(
                cmd,
                ResponseCode.SYSTEM_ERROR,
                remark=f"org.apache.rocketmq.acl.common.AclException: {refusal}, "
                "org.apache.rocketmq.acl.plain.PlainPermissionManager.validate"
                "(PlainPermissionManager.java:683)",
            )
        if code == RequestCode.UPDATE_AND_CREATE_TOPIC and cmd.ext_fields.get("topic") == "":
            # What ask_admin_permission meets on a real broker past its ACL.
            return self._reply(cmd, 1, remark="The specified topic is blank.")
        if code == RequestCode.GET_BROKER_RUNTIME_INFO:
            body = json.dumps({"table": self.runtime_info()}, separators=(",", ":"))
            return self._reply(cmd, 0, body=body.encode("utf-8"))
        if code == RequestCode.GET_BROKER_CONFIG:
            version = json.dumps(
                {"counter": self._config_version, "timestamp": self.boot_timestamp_ms},
                separators=(",", ":"),
            )
            return self._reply(cmd, 0, ext_fields={"version": version}, body=self.config_text())
        if code == RequestCode.UPDATE_BROKER_CONFIG:
            try:
                updates = parse_properties(cmd.body, java_escapes=True)
            except ProtocolError:
                return self._reply(cmd, 1, remark="string2Properties error")
            for key, value in updates.items():
                if key in self.config:  # like the real broker: unknown keys are ignored
                    self.config[key] = value
            self._config_version += 1
            return self._reply(cmd, 0)
        if code == RequestCode.GET_MAX_OFFSET:
            try:
                queue_id = int(cmd.ext_fields.get("queueId", ""))
            except ValueError:
                return self._reply(cmd, 1, remark="the custom field <queueId> is null")
            offset = self.queue_offsets.get((cmd.ext_fields.get("topic", ""), queue_id), 0)
            return self._reply(cmd, 0, ext_fields={"offset": str(offset)})
        return self._reply(
            cmd,
            ResponseCode.REQUEST_CODE_NOT_SUPPORTED,
            remark=f" request type {code} not supported",
        )


class StandinServer:
    """A set of stand-in nodes started and stopped together (an async context manager)."""

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.nodes: list[StandinNode] = []
        self._registrations: list[tuple[StandinBroker, tuple[StandinNamesrv, ...]]] = []

    @property
    def namesrvs(self) -> list[StandinNamesrv]:
        return [n for n in self.nodes if isinstance(n, StandinNamesrv)]

    @property
    def brokers(self) -> list[StandinBroker]:
        return [n for n in self.nodes if isinstance(n, StandinBroker)]

    def add_namesrv(self, *, port: int = 0) -> StandinNamesrv:
        node = StandinNamesrv(host=self.host, port=port)
        self.nodes.append(node)
        return node

    def add_broker(
        self,
        broker_name: str,
        broker_id: int = 0,
        *,
        cluster: str = "DefaultCluster",
        role: str | None = None,
        port: int = 0,
        register_with: Iterable[StandinNamesrv] = (),
    ) -> StandinBroker:
        """A broker node; it is registered with ``register_with`` once its port is known."""
        node = StandinBroker(
            broker_name, broker_id, cluster=cluster, role=role, host=self.host, port=port
        )
        self.nodes.append(node)
        namesrvs = tuple(register_with)
        if namesrvs:
            self._registrations.append((node, namesrvs))
        return node

    async def start(self) -> None:
        """Start every node not started yet (all ports listen when this returns)."""
        await asyncio.gather(*(n.start() for n in self.nodes if not n.is_started))
        for broker, namesrvs in self._registrations:
            for ns in namesrvs:
                ns.register(
                    broker.broker_name, broker.broker_id, broker.addr, cluster=broker.cluster
                )
            broker.config["namesrvAddr"] = ";".join(ns.addr for ns in namesrvs)
        self._registrations.clear()

    async def stop(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes), return_exceptions=True)

    async def __aenter__(self) -> StandinServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
