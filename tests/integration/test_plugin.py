"""The broker plug-in (broker-plugin/) inside real RocketMQ 4.9.7 brokers, driven through the
Python client (watchdog.remoting's plug-in calls) on sandboxes started with
`--promotion inplace`: its info, every refusal leaving the slave as it was, an in-place
promotion after a kill -9 with the traps it must avoid (stale queue offsets, delay messages,
consumer retries, transaction check-back, a restart afterwards), re-pointing a second slave,
switching a running master between ASYNC and SYNC, and a slave whose log ends inside a message.

Real clients (librocketmq) run in children: tests/integration/plugin_clients.py. The wheel has
no transactional producer, so that one is raw remoting (RawTransactionalProducer).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.daemon_harness import (
    Topology,
    broker_config,
    masters_everywhere,
    runtime_info,
    wait_until,
)
from tests.integration.plugin_clients import (
    call,
    consumer_deliveries,
    has_topic_config,
    info,
    make_topic,
    pull,
    send,
    start_consumer,
)
from watchdog.config import read_plugin_secret
from watchdog.remoting import (
    PROMOTE_IN_PLACE,
    SET_HA_MASTER,
    SET_MASTER_ROLE,
    FrameDecoder,
    PluginInfo,
    PluginRefused,
    PluginUnauthorized,
    Promotion,
    RemoteError,
    RemotingClient,
    RemotingCommand,
    auth_fields,
    encode_frame,
    get_max_offset,
    get_plugin_info,
    promote_in_place,
    set_ha_master,
    set_master_role,
)
from watchdog.tools.sandbox import Sandbox

pytestmark = pytest.mark.integration

A0, A1, A2 = "broker-a:0", "broker-a:1", "broker-a:2"
# Generous: a promotion stops the HA client (up to its 5 s connect timeout) and registers
# synchronously (up to 6 s per dead nameserver).
PROMOTE_TIMEOUT_SECONDS = 30.0
SEND_MESSAGE_V2 = 310


# --------------------------------------------------------------------------- helpers


def raw(addr: str, code: int, fields: Mapping[str, str]) -> RemotingCommand:
    """A request exactly as given (for replays and garbage)."""
    return call(addr, lambda c: c.request(code, fields, timeout_seconds=PROMOTE_TIMEOUT_SECONDS))


def signed(
    secret: bytes, code: int, fields: Mapping[str, str], *, skew_ms: int = 0
) -> dict[str, str]:
    now_ms = time.time_ns() // 1_000_000 + skew_ms
    return auth_fields(secret, code, fields, now_ms=now_ms, nonce=secrets.token_hex(16))


def promote(
    addr: str, secret: bytes, *, expect: int, epoch: int, role: str = "ASYNC_MASTER"
) -> Promotion:
    return call(
        addr,
        lambda c: promote_in_place(
            c,
            secret=secret,
            role=role,
            expect_max_phy_offset=expect,
            epoch=epoch,
            timeout_seconds=PROMOTE_TIMEOUT_SECONDS,
        ),
    )


def repoint(addr: str, secret: bytes, *, ha: str, master: str, epoch: int) -> None:
    call(
        addr,
        lambda c: set_ha_master(
            c,
            secret=secret,
            ha_master_address=ha,
            master_address=master,
            epoch=epoch,
            timeout_seconds=PROMOTE_TIMEOUT_SECONDS,
        ),
    )


def set_role(addr: str, secret: bytes, *, role: str, epoch: int) -> None:
    call(
        addr,
        lambda c: set_master_role(
            c, secret=secret, role=role, epoch=epoch, timeout_seconds=PROMOTE_TIMEOUT_SECONDS
        ),
    )


def ha_addr(addr: str) -> str:
    """A sandbox broker's HA address: its listen port + 1 (haListenPort's default)."""
    host, _, port = addr.rpartition(":")
    return f"{host}:{int(port) + 1}"


def max_offset(addr: str) -> int:
    table = runtime_info(addr)
    assert table is not None, f"{addr} does not answer"
    return int(table["commitLogMaxOffset"])


def queue_max(addr: str, topic: str, queue_id: int) -> int:
    return call(addr, lambda c: get_max_offset(c, topic, queue_id, timeout_seconds=5.0))


def rewrite_properties(path: Path, values: Mapping[str, str]) -> None:
    """Set keys of a broker's properties file, as the watchdog's rewrite does."""
    lines = path.read_text().splitlines()
    seen: set[str] = set()
    out = []
    for line in lines:
        key = line.split("=", 1)[0].strip()
        if key in values:
            out.append(f"{key}={values[key]}")
            seen.add(key)
        else:
            out.append(line)
    out += [f"{k}={v}" for k, v in values.items() if k not in seen]
    path.write_text("\n".join(out) + "\n")


def wait_caught_up(master: str, *slaves: str, seconds: float = 60) -> int:
    def done() -> int | None:
        end = max_offset(master)
        return end if all(max_offset(s) == end for s in slaves) else None

    return wait_until(done, seconds, f"{', '.join(slaves)} catching up with {master}")


def unchanged_slave(addr: str, *, ha: str, last_epoch: int) -> PluginInfo:
    now = info(addr)
    assert (now.broker_role, now.broker_id) == ("SLAVE", 1), now
    assert now.ha_master_address == ha, now
    assert now.last_epoch == last_epoch, now
    return now


class RawTransactionalProducer:
    """A transactional producer spoken in raw remoting, because the librocketmq wheel (0.4.4)
    has none: its C API exports no transaction producer. It registers its group with a
    heartbeat, sends half messages (SEND_MESSAGE_V2, TRAN_MSG, sysFlag TRANSACTION_PREPARED),
    receives the broker's CHECK_TRANSACTION_STATE requests and answers END_TRANSACTION, as the
    Java client's TransactionMQProducer does."""

    def __init__(self, addr: str, group: str) -> None:
        self.addr, self.group = addr, group
        self.checks: asyncio.Queue[RemotingCommand] = asyncio.Queue()
        self._pending: dict[int, asyncio.Future[RemotingCommand]] = {}
        self._opaques = itertools.count(1)

    async def __aenter__(self) -> RawTransactionalProducer:
        host, _, port = self.addr.rpartition(":")
        self._reader, self._writer = await asyncio.open_connection(host, int(port))
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        self._writer.close()

    async def _read(self) -> None:
        decoder = FrameDecoder()
        while chunk := await self._reader.read(65536):
            for cmd in decoder.feed(chunk):
                if cmd.is_response:
                    future = self._pending.pop(cmd.opaque, None)
                    if future is not None:
                        future.set_result(cmd)
                else:
                    await self.checks.put(cmd)  # the broker's requests to its producer

    async def request(
        self, code: int, fields: Mapping[str, str], body: bytes = b""
    ) -> RemotingCommand:
        opaque = next(self._opaques)
        future = asyncio.get_running_loop().create_future()
        self._pending[opaque] = future
        cmd = RemotingCommand(code=code, ext_fields=dict(fields), body=body)
        self._writer.write(encode_frame(cmd, opaque=opaque))
        return await asyncio.wait_for(future, 30.0)

    async def heartbeat(self) -> None:
        body = {"clientID": f"plugin-test@{os.getpid()}", "producerDataSet":
                [{"groupName": self.group}], "consumerDataSet": []}  # fmt: skip
        reply = await self.request(34, {}, json.dumps(body).encode())  # HEART_BEAT
        assert reply.code == 0, reply

    async def send_half(self, topic: str, key: str, uniq: str) -> None:
        properties = (f"TRAN_MSG\x01true\x02PGROUP\x01{self.group}\x02KEYS\x01{key}\x02"
                      f"UNIQ_KEY\x01{uniq}\x02")  # fmt: skip
        header = {
            "a": self.group, "b": topic, "c": "TBW102", "d": "1", "e": "0", "f": "4",
            "g": str(int(time.time() * 1000)), "h": "0", "i": properties, "j": "0", "k": "false",
        }  # fmt: skip
        reply = await self.request(SEND_MESSAGE_V2, header, f"{key} body".encode())
        assert reply.code == 0, (reply.code, reply.remark)

    async def commit(self, check: RemotingCommand) -> RemotingCommand:
        """END_TRANSACTION committing the half message a CHECK_TRANSACTION_STATE asked about."""
        fields = check.ext_fields
        return await self.request(37, {  # END_TRANSACTION
            "producerGroup": self.group,
            "tranStateTableOffset": fields["tranStateTableOffset"],
            "commitLogOffset": fields["commitLogOffset"],
            "commitOrRollback": "8",  # MessageSysFlag.TRANSACTION_COMMIT_TYPE
            "fromTransactionCheck": "true",
            "msgId": fields["msgId"],
            "transactionId": fields["transactionId"],
        })  # fmt: skip


# --------------------------------------------------------------------------- no plug-in


def test_a_broker_without_the_plugin_is_no_plugin(sandbox_cluster: Sandbox) -> None:
    master = Topology.of(sandbox_cluster).addrs[A0]
    assert call(master, lambda c: get_plugin_info(c, timeout_seconds=5.0)) is None
    with pytest.raises(RemoteError) as error:
        promote(master, b"0123456789abcdef", expect=0, epoch=1)
    assert error.value.code == 3


# --------------------------------------------------------------------------- a pair


@dataclass(frozen=True)
class Pair:
    box: Sandbox
    top: Topology
    secret: bytes
    master: str
    slave: str


@pytest.fixture(scope="module")
def pair(plugin_sandboxes: Callable[..., Sandbox]) -> Pair:
    box = plugin_sandboxes()
    top = Topology.of(box)
    secret = read_plugin_secret(box.info()["plugin_secret_file"])
    master, slave = top.addrs[A0], top.addrs[A1]
    make_topic(master, "PairTopic", 2)
    assert not send(top.namesrv, "PairTopic", "pair", 20)["errors"]
    # The slave learns its master's HA address from its registrations (the first one may
    # precede the master's): wait until it replicates.
    wait_until(lambda: info(slave).ha_master_address == ha_addr(master), 60, "replication")
    wait_caught_up(master, slave)
    return Pair(box, top, secret, master, slave)


def test_plugin_info_on_the_master_and_the_slave(pair: Pair) -> None:
    master, slave = info(pair.master), info(pair.slave)
    assert master.broker_role == "ASYNC_MASTER" and master.broker_id == 0
    assert master.ha_master_address == "" and master.last_epoch == 0
    assert slave.broker_role == "SLAVE" and slave.broker_id == 1
    assert slave.ha_master_address == ha_addr(pair.master)
    for found in (master, slave):
        assert found.rocketmq_version == "4.9.7" and found.plugin_version
        assert found.has_secret and found.dispatch_behind_bytes == 0
    assert slave.max_phy_offset == master.max_phy_offset > 0
    # The fast (VIP) port, listenPort - 2, answers too.
    host, _, port = pair.slave.rpartition(":")
    assert info(f"{host}:{int(port) - 2}").broker_id == 1


def test_refusals_leave_the_slave_a_replicating_slave(pair: Pair) -> None:
    slave, master, secret = pair.slave, pair.master, pair.secret
    ha = ha_addr(master)
    end = info(slave).max_phy_offset
    promote_fields = {"role": "ASYNC_MASTER", "expectMaxPhyOffset": str(end), "epoch": "3"}

    # A wrong secret, a signed field changed, a stale or future issuedAt.
    with pytest.raises(PluginUnauthorized, match="bad mac"):
        promote(slave, b"not the secret, 32 bytes long...", expect=end, epoch=3)
    tampered = {**signed(secret, PROMOTE_IN_PLACE, promote_fields), "epoch": "4"}
    assert (raw(slave, PROMOTE_IN_PLACE, tampered).remark or "") == "bad mac"
    for skew_ms in (-61_000, 61_000):
        stale = raw(
            slave,
            PROMOTE_IN_PLACE,
            signed(secret, PROMOTE_IN_PLACE, promote_fields, skew_ms=skew_ms),
        )
        assert (stale.code, stale.remark) == (16, "stale issuedAt")

    # Garbage and missing fields: bad_request naming the field.
    garbage: list[tuple[int, dict[str, str], str]] = [
        (PROMOTE_IN_PLACE, {**promote_fields, "role": "BOSS"}, "role"),
        (PROMOTE_IN_PLACE, {**promote_fields, "role": "SLAVE"}, "role"),
        (PROMOTE_IN_PLACE, {**promote_fields, "expectMaxPhyOffset": "12x"}, "expectMaxPhyOffset"),
        (PROMOTE_IN_PLACE, {"role": "ASYNC_MASTER", "epoch": "3"}, "expectMaxPhyOffset"),
        (
            SET_HA_MASTER,
            {"haMasterAddress": "nope", "masterAddress": master, "epoch": "3"},
            "haMasterAddress",
        ),
        (SET_MASTER_ROLE, {"role": "SYNC_MASTER", "epoch": "three"}, "epoch"),
    ]
    for code, fields, field in garbage:
        answer = raw(slave, code, signed(secret, code, fields))
        assert answer.code == 30950 and answer.ext_fields.get("refusal") == "bad_request", answer
        assert f"field {field} " in (answer.remark or ""), answer
    no_nonce = signed(secret, PROMOTE_IN_PLACE, promote_fields)
    del no_nonce["nonce"]
    short_nonce = {**signed(secret, PROMOTE_IN_PLACE, promote_fields), "nonce": "abc"}
    no_mac = signed(secret, PROMOTE_IN_PLACE, promote_fields)
    del no_mac["mac"]
    for fields, field in ((no_nonce, "nonce"), (short_nonce, "nonce"), (no_mac, "mac")):
        answer = raw(slave, PROMOTE_IN_PLACE, fields)
        assert answer.ext_fields.get("refusal") == "bad_request", answer
        assert f"field {field} " in (answer.remark or ""), answer

    # A log end that is not the slave's: refused after replication was stopped, and restored.
    # The same request again is a replay.
    moved = signed(secret, PROMOTE_IN_PLACE, {**promote_fields, "expectMaxPhyOffset": str(end + 1)})
    answer = raw(slave, PROMOTE_IN_PLACE, moved)
    assert answer.ext_fields.get("refusal") == "log_moved", answer
    replay = raw(slave, PROMOTE_IN_PLACE, moved)
    assert (replay.code, replay.remark) == (16, "replayed nonce")
    unchanged_slave(slave, ha=ha, last_epoch=0)

    # Epochs: re-pointing to the same master at epoch 5 serves it; 5 and 4 are then too old
    # for a promotion, 4 too old for anything.
    repoint(slave, secret, ha=ha, master=master, epoch=5)
    unchanged_slave(slave, ha=ha, last_epoch=5)
    for epoch in (5, 4):
        with pytest.raises(PluginRefused) as refused:
            promote(slave, secret, expect=end, epoch=epoch)
        assert refused.value.refusal == "epoch_not_newer"
    with pytest.raises(PluginRefused) as refused:
        repoint(slave, secret, ha=ha, master=master, epoch=4)
    assert refused.value.refusal == "epoch_not_newer"
    # Roles: a slave is no master, a master no slave.
    with pytest.raises(PluginRefused) as refused:
        set_role(slave, secret, role="SYNC_MASTER", epoch=5)
    assert refused.value.refusal == "not_master"
    with pytest.raises(PluginRefused) as refused:
        promote(master, secret, expect=info(master).max_phy_offset, epoch=9)
    assert refused.value.refusal == "not_slave"
    assert info(master).broker_role == "ASYNC_MASTER"

    # After all that: the same slave, still replicating every new write.
    unchanged_slave(slave, ha=ha, last_epoch=5)
    assert not send(pair.top.namesrv, "PairTopic", "after-refusals", 20)["errors"]
    end_now = wait_caught_up(master, slave)
    assert end_now > end
    assert info(slave).dispatch_behind_bytes == 0
    assert (pair.box.dir / "store" / "broker-a-1" / "watchdog-plugin.epoch").read_text() == "5\n"


def test_the_secret_is_read_at_every_request(pair: Pair) -> None:
    secret_file = pair.box.dir / "store" / "broker-a-1" / "watchdog-plugin.secret"
    original = secret_file.read_bytes()
    rotated = secrets.token_hex(32).encode()

    def role_change(secret: bytes) -> Exception:
        # Harmless on a slave: past authentication it is refused as not_master.
        try:
            set_role(pair.slave, secret, role="SYNC_MASTER", epoch=99)
        except (PluginRefused, PluginUnauthorized) as exc:
            return exc
        raise AssertionError("a slave accepted SET_MASTER_ROLE")

    try:
        secret_file.write_bytes(rotated + b"\n")
        assert str(role_change(pair.secret)).endswith("bad mac")
        assert getattr(role_change(rotated), "refusal", None) == "not_master"
        secret_file.unlink()
        assert str(role_change(rotated)).endswith("no secret loaded")
        assert not info(pair.slave).has_secret
        secret_file.write_bytes(b"too short\n")
        assert str(role_change(b"too short")).endswith("no secret loaded")
    finally:
        secret_file.write_bytes(original)
        secret_file.chmod(0o600)
    assert info(pair.slave).has_secret


# --------------------------------------------------------------------------- promoted in place


@dataclass
class Promoted:
    box: Sandbox
    top: Topology
    secret: bytes
    old_master: str
    new_master: str
    other_slave: str
    topic: str
    written_before: list[str]
    log_end: int
    promotion: Promotion
    kill_to_reply_seconds: float
    reply_to_registered_seconds: float


TOPIC = "PromotedTopic"
QUEUES = 4
TX_TOPIC = "PromotedTxTopic"
TX_GROUP = "PluginTxGroup"
TX_UNIQ = {
    "tx-before": "0A0A0A0A00002A9F00000000000000B1",
    "tx-after": "0A0A0A0A00002A9F00000000000000A2",
}


@pytest.fixture(scope="module")
def promoted(plugin_sandboxes: Callable[..., Sandbox]) -> Promoted:
    """broker-a:1 promoted in place after a kill -9 of broker-a:0; broker-a:2 still a slave of
    the dead master, pinned to it by haMasterAddress (so only SET_HA_MASTER re-points it)."""
    box = plugin_sandboxes(slaves=2)
    top = Topology.of(box)
    secret = read_plugin_secret(box.info()["plugin_secret_file"])
    old, new, other = top.addrs[A0], top.addrs[A1], top.addrs[A2]
    rewrite_properties(top.properties[A2], {"haMasterAddress": ha_addr(old)})
    box.stop(A2)
    box.start(A2, wait_registered=True)
    make_topic(old, TOPIC, QUEUES)
    wait_until(
        lambda: all(has_topic_config(s, TOPIC) for s in (new, other)),
        60,
        f"the slaves syncing {TOPIC}",
    )
    # The slave to promote boots holding 10 messages per queue, then replicates 20 more per
    # queue: its CommitLog.topicQueueTable knows of the first 10 only.
    boot = send(top.namesrv, TOPIC, "boot", 10 * QUEUES)
    wait_until(lambda: info(new).ha_master_address == ha_addr(old), 60, "replication")
    wait_caught_up(old, new, other)
    # Check half messages every 3 s once 2 s old, and never give one up: the check-back test
    # must not wait the default minute.
    rewrite_properties(
        top.properties[A1],
        {"transactionCheckInterval": "3000", "transactionTimeOut": "2000",
         "transactionCheckMax": "100000"},
    )  # fmt: skip
    box.stop(A1)
    box.start(A1, wait_registered=True)
    before = send(top.namesrv, TOPIC, "before", 20 * QUEUES)
    assert len(boot["acked"]) == 10 * QUEUES and len(before["acked"]) == 20 * QUEUES, before
    wait_until(lambda: info(new).ha_master_address == ha_addr(old), 60, "replication")
    # A transaction in flight: its half message replicated, neither committed nor checked.
    make_topic(old, TX_TOPIC, 1)
    wait_until(lambda: has_topic_config(new, TX_TOPIC), 60, f"the slave syncing {TX_TOPIC}")

    async def half_before() -> None:
        async with RawTransactionalProducer(old, TX_GROUP) as producer:
            await producer.send_half(TX_TOPIC, "tx-before", TX_UNIQ["tx-before"])

    asyncio.run(half_before())
    wait_caught_up(old, new, other)

    box.kill(A0, "KILL")
    killed = time.monotonic()
    end = info(new).max_phy_offset
    promotion = promote(new, secret, expect=end, epoch=1)
    replied = time.monotonic()
    wait_until(
        lambda: masters_everywhere(top.nameservers, "broker-a") == {new},
        30,
        "the promoted broker registered as id 0 everywhere",
    )
    registered = time.monotonic()
    print(
        f"\npromote in place: kill -9 -> reply {replied - killed:.3f} s, "
        f"reply -> id 0 on both nameservers {registered - replied:.3f} s"
    )
    return Promoted(
        box,
        top,
        secret,
        old,
        new,
        other,
        TOPIC,
        boot["acked"] + before["acked"],
        end,
        promotion,
        replied - killed,
        registered - replied,
    )


def test_the_promotion_answers_its_point_epoch_and_role(promoted: Promoted) -> None:
    assert promoted.promotion.epoch == 1
    assert promoted.promotion.broker_role == "ASYNC_MASTER"
    now = info(promoted.new_master)
    assert (now.broker_role, now.broker_id, now.last_epoch) == ("ASYNC_MASTER", 0, 1)
    assert now.ha_master_address == ""  # no replication into a master
    assert promoted.promotion.promotion_point == promoted.log_end
    config = broker_config(promoted.new_master)
    assert config is not None and config["brokerId"] == "0"
    assert config["brokerRole"] == "ASYNC_MASTER"
    # The broker never rewrote its properties file (the watchdog does that).
    assert "brokerId=1" in promoted.top.properties[A1].read_text()


def test_transaction_check_back_works_on_the_promoted_master(promoted: Promoted) -> None:
    """Half messages (one replicated before the kill, one sent after the promotion) are checked
    back by the promoted broker's transaction check service (a slave never runs it) and, once
    committed, delivered. The producer is raw remoting: the librocketmq wheel has none."""
    new, namesrv = promoted.new_master, promoted.top.namesrv
    by_uniq = {uniq: key for key, uniq in TX_UNIQ.items()}

    async def go() -> dict[str, int]:
        async with RawTransactionalProducer(new, TX_GROUP) as producer:
            await producer.heartbeat()
            await producer.send_half(TX_TOPIC, "tx-after", TX_UNIQ["tx-after"])
            committed: dict[str, int] = {}
            while set(committed) != set(TX_UNIQ):
                check = await asyncio.wait_for(producer.checks.get(), 60.0)
                assert check.code == 39, check  # CHECK_TRANSACTION_STATE
                key = by_uniq[check.ext_fields["transactionId"]]
                if key not in committed:
                    committed[key] = (await producer.commit(check)).code
            return committed

    assert pull(namesrv, TX_TOPIC) == []  # half messages are invisible until committed
    assert asyncio.run(go()) == {"tx-before": 0, "tx-after": 0}
    delivered = wait_until(lambda: pull(namesrv, TX_TOPIC, seconds=20) or None, 60, "commits")
    assert sorted(m["key"] for m in delivered) == ["tx-after", "tx-before"]


def test_set_ha_master_repoints_the_other_slave(promoted: Promoted) -> None:
    other, new, secret = promoted.other_slave, promoted.new_master, promoted.secret
    before = info(other)
    assert before.ha_master_address == ha_addr(promoted.old_master)  # pinned to the dead one
    assert before.max_phy_offset <= promoted.promotion.promotion_point
    repoint(other, secret, ha=ha_addr(new), master=new, epoch=1)
    now = info(other)
    assert (now.broker_role, now.broker_id, now.last_epoch) == ("SLAVE", 2, 1)
    assert now.ha_master_address == ha_addr(new)
    assert not send(promoted.top.namesrv, "RepointTopic", "repoint", 20)["errors"]
    wait_caught_up(new, other)
    assert info(other).dispatch_behind_bytes == 0


def test_set_master_role_switches_a_running_master(promoted: Promoted) -> None:
    new, secret, namesrv = promoted.new_master, promoted.secret, promoted.top.namesrv
    properties = promoted.top.properties[A1].read_bytes()

    def role(name: str) -> None:
        set_role(new, secret, role=name, epoch=1)
        assert info(new).broker_role == name
        config = broker_config(new)
        assert config is not None and config["brokerRole"] == name

    make_topic(new, "RoleTopic", 1)
    wait_caught_up(new, promoted.other_slave)
    keys = [f"role-{i}" for i in range(15)]
    role("SYNC_MASTER")
    # Each send waits for the slave's acknowledgement, and gets it.
    assert raw_send(new, "RoleTopic", keys[:5], 100, in_flight=1) == [0] * 5
    # No slave left: a SYNC_MASTER stores, but answers SLAVE_NOT_AVAILABLE (11) at once; the
    # librocketmq producer reports that as a failed send.
    promoted.box.kill(A2, "KILL")
    time.sleep(1.0)  # the master's HA reader sees the closed connection (select wakes on it)
    assert raw_send(new, "RoleTopic", keys[5:10], 100, in_flight=1) == [11] * 5
    role("ASYNC_MASTER")
    assert raw_send(new, "RoleTopic", keys[10:], 100, in_flight=1) == [0] * 5
    assert queue_max(new, "RoleTopic", 0) == 15  # the SLAVE_NOT_AVAILABLE ones were stored
    assert send(namesrv, "RoleTopic", "role-async", 5)["statuses"] == {"0": 5}
    # Unlike UPDATE_BROKER_CONFIG, the switch leaves the properties file alone.
    assert promoted.top.properties[A1].read_bytes() == properties


def test_every_message_written_after_the_promotion_is_consumable(promoted: Promoted) -> None:
    """The stale-queue-offset trap: without recoverTopicQueueTable the promoted broker would
    give new messages queue offsets its consume queues already hold, and drop them."""
    after = send(promoted.top.namesrv, TOPIC, "after", 50 * QUEUES)
    assert len(after["acked"]) == 50 * QUEUES, after
    stored = pull(promoted.top.namesrv, TOPIC)
    keys = Counter(m["key"] for m in stored)
    missing = [k for k in promoted.written_before + after["acked"] if keys[k] != 1]
    assert missing == [], f"{len(missing)} acked messages not consumable once: {missing[:10]}"
    per_queue: dict[int, list[int]] = {}
    for m in stored:
        per_queue.setdefault(m["queue_id"], []).append(m["queue_offset"])
    after_keys = set(after["acked"])
    for queue_id, offsets in per_queue.items():
        assert sorted(offsets) == list(range(len(offsets))), f"queue {queue_id}: {offsets}"
        assert queue_max(promoted.new_master, TOPIC, queue_id) == len(offsets)
    after_per_queue = Counter(m["queue_id"] for m in stored if m["key"] in after_keys)
    assert sorted(after_per_queue) == list(range(QUEUES))
    assert min(after_per_queue.values()) > 30  # more than the slave held and replicated
    log = Path(next(b["log"] for b in promoted.box.info()["brokers"] if b["broker_id"] == 1))
    assert "Build consume queue repeatedly" not in log.read_text(errors="replace")


def test_delay_messages_are_delivered_after_the_promotion(promoted: Promoted) -> None:
    namesrv, new = promoted.top.namesrv, promoted.new_master
    make_topic(new, "DelayTopic", 2)
    level2_before = queue_max(new, "SCHEDULE_TOPIC_XXXX", 1)  # delay level 2 = queue 1 (5 s)
    keys = [f"delayed-{i}" for i in range(6)]
    consumer = start_consumer(namesrv, "DelayTopic", "PluginDelayGroup", keys, seconds=90)
    sent = send(namesrv, "DelayTopic", "delayed", 6, delay_level=2)
    assert sent["acked"] == keys, sent
    deliveries = consumer_deliveries(consumer, 150)
    assert {d["key"] for d in deliveries} == set(keys), deliveries
    # Delivered by the promoted broker's ScheduleMessageService, not at once.
    assert min(d["at"] for d in deliveries) - sent["sent_at"] > 4.0, deliveries
    assert queue_max(new, "SCHEDULE_TOPIC_XXXX", 1) - level2_before == 6


def test_consumer_retries_are_delivered_after_the_promotion(promoted: Promoted) -> None:
    namesrv, new = promoted.top.namesrv, promoted.new_master
    group = "PluginRetryGroup"
    make_topic(new, "RetryTopic", 2)
    keys = [f"retried-{i}" for i in range(4)]
    consumer = start_consumer(namesrv, "RetryTopic", group, keys, seconds=120, retry_once=True)
    sent = send(namesrv, "RetryTopic", "retried", 4)
    assert sent["acked"] == keys, sent
    deliveries = consumer_deliveries(consumer, 180)
    redelivered = {d["key"] for d in deliveries if d["reconsume_times"] >= 1}
    assert redelivered == set(keys), deliveries
    # Through the promoted broker: sent back, delayed (level 3 = queue 2), then %RETRY%.
    assert queue_max(new, "SCHEDULE_TOPIC_XXXX", 2) >= 4
    assert queue_max(new, f"%RETRY%{group}", 0) >= 4


def test_a_restart_of_the_promoted_broker_keeps_every_message_and_its_role(
    promoted: Promoted,
) -> None:
    """As the watchdog leaves it: properties rewritten to brokerId=0 and the role, a restart
    later. Every message stays, and so does the epoch the plug-in served."""
    new, namesrv = promoted.new_master, promoted.top.namesrv
    assert not send(namesrv, TOPIC, "pre-restart", 20)["errors"]
    stored = sorted((m["queue_id"], m["queue_offset"], m["key"]) for m in pull(namesrv, TOPIC))
    rewrite_properties(promoted.top.properties[A1], {"brokerId": "0", "brokerRole": "ASYNC_MASTER"})
    promoted.box.stop(A1)
    promoted.box.start(A1, wait_registered=True)
    again = sorted((m["queue_id"], m["queue_offset"], m["key"]) for m in pull(namesrv, TOPIC))
    assert again == stored
    now = info(new)
    assert (now.broker_role, now.broker_id, now.last_epoch) == ("ASYNC_MASTER", 0, 1)
    assert not send(namesrv, TOPIC, "post-restart", 20)["errors"]
    keys = Counter(m["key"] for m in pull(namesrv, TOPIC))
    assert all(keys[f"post-restart-{i}"] == 1 for i in range(20))


# --------------------------------------------------------------------------- a partial tail


PARTIAL_TOPIC = "PartialTailTopic"


def raw_send(
    addr: str, topic: str, keys: list[str], body_bytes: int, *, in_flight: int = 8
) -> list[int]:
    """SEND_MESSAGE_V2 of random (incompressible) bodies to queue 0 of `topic`, several in
    flight; the broker's response codes, in key order."""

    async def go() -> list[int]:
        client = RemotingClient(addr, connect_timeout_seconds=2.0)
        body = os.urandom(body_bytes)

        async def one(key: str) -> int:
            header = {
                "a": "PluginTestRawPG", "b": topic, "c": "TBW102", "d": "1", "e": "0", "f": "0",
                "g": str(int(time.time() * 1000)), "h": "0", "i": f"KEYS\x01{key}\x02",
                "j": "0", "k": "false",
            }  # fmt: skip
            reply = await client.request(SEND_MESSAGE_V2, header, body, timeout_seconds=30.0)
            return reply.code

        codes: list[int] = []
        try:
            for first in range(0, len(keys), in_flight):
                batch = keys[first : first + in_flight]
                codes += await asyncio.gather(*(one(k) for k in batch))
        finally:
            await client.close()
        return codes

    return asyncio.run(go())


def test_a_slave_whose_log_ends_inside_a_message_is_refused_and_restarts_clean(
    fresh_sandbox: Callable[..., Sandbox],
) -> None:
    """HA frames are cut every 32 KiB whatever the message boundaries. The slave is frozen
    while the master takes 24 MB of 40 KB messages (its HA sender falls behind and sends full
    32 KiB frames), the master is frozen and the slave thawed: it appends the whole frames it
    receives, the last one ending inside a message; then the master is killed. The plug-in
    refuses the slave with partial_tail and leaves it as it was; the restart path (properties
    rewritten, restart) truncates the partial message, serves everything before it, and then
    new writes."""
    box = fresh_sandbox(promotion="inplace")
    top = Topology.of(box)
    secret = read_plugin_secret(box.info()["plugin_secret_file"])
    master, slave = top.addrs[A0], top.addrs[A1]
    make_topic(master, PARTIAL_TOPIC, 1)
    wait_until(lambda: has_topic_config(slave, PARTIAL_TOPIC), 60, "the slave's topic sync")
    wait_until(lambda: info(slave).ha_master_address == ha_addr(master), 60, "replication")
    # A stored size that is odd: then no 32 KiB frame cut can fall on a message boundary
    # once the sender is behind (the log starts at 0 with messages of this size only).
    assert raw_send(master, PARTIAL_TOPIC, ["partial-000000"], 40_000) == [0]
    size = max_offset(master)
    body = 40_000 if size % 2 else 40_001
    keys = [f"partial-{i:06d}" for i in range(600)]
    assert raw_send(master, PARTIAL_TOPIC, keys[1:3], body) == [0, 0]
    wait_caught_up(master, slave)

    box.kill(A1, "STOP")
    try:
        assert set(raw_send(master, PARTIAL_TOPIC, keys[3:], body)) == {0}
        # Frozen, not killed yet: the slave then reads every byte its master's kernel sent,
        # which ends inside a frame the master was writing; a kill now would make the slave's
        # next acknowledgement draw a reset that drops what it had not read yet.
        box.kill(A0, "STOP")
    finally:
        box.kill(A1, "CONT")
    last: list[int] = []

    def settled() -> int | None:
        last.append(max_offset(slave))
        return last[-1] if len(last) > 3 and len(set(last[-4:])) == 1 else None

    end = wait_until(settled, 60, "the slave's log end to settle")
    box.kill(A0, "KILL")
    tail = info(slave)
    assert tail.max_phy_offset == end
    assert tail.dispatch_behind_bytes > 0, tail  # reput waits at the partial message
    print(f"\npartial tail: log end {end}, {tail.dispatch_behind_bytes} bytes undispatched")

    with pytest.raises(PluginRefused) as refused:
        promote(slave, secret, expect=end, epoch=1)
    assert refused.value.refusal == "partial_tail", refused.value
    unchanged_slave(slave, ha=ha_addr(master), last_epoch=0)
    assert info(slave).max_phy_offset == end

    # The restart path: the watchdog's rewrite, a restart; recovery cuts the partial message.
    rewrite_properties(top.properties[A1], {"brokerId": "0", "brokerRole": "ASYNC_MASTER"})
    box.stop(A1)
    box.start(A1, wait_registered=True)
    stored = pull(top.namesrv, PARTIAL_TOPIC)
    count = len(stored)
    assert 3 < count < len(keys)
    stored_keys = [m["key"] for m in stored]
    # Sends were 8 in flight at a time: the log holds every key up to that window, once.
    assert len(set(stored_keys)) == count and set(stored_keys) <= set(keys)
    assert set(keys[: max(0, count - 8)]) <= set(stored_keys)
    assert [m["queue_offset"] for m in stored] == list(range(count))
    assert max_offset(slave) < end
    after = send(top.namesrv, PARTIAL_TOPIC, "after-restart", 10)
    assert len(after["acked"]) == 10, after
    again = pull(top.namesrv, PARTIAL_TOPIC)
    assert [m["key"] for m in again] == stored_keys + after["acked"]
    assert [m["queue_offset"] for m in again] == list(range(count + 10))
