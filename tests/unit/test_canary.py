"""The canary without a cluster: result parsing, child supervision, and the run_canary steps."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit._golden import Replay
from watchdog.act import run_canary
from watchdog.decide import canary_topic
from watchdog.native import (
    CanaryOutputError,
    ClientOutcome,
    ProbeReport,
    ProbeSend,
    client_argv,
    parse_client_output,
    parse_probe_output,
    run_canary_client,
    send_probe_messages,
)
from watchdog.remoting import (
    RemoteError,
    RemotingCommand,
    RemotingConnectError,
    RemotingTimeout,
    check_topic_name,
    create_topic,
)

NS1, NS2 = "127.0.0.1:9876", "127.0.0.1:9877"
MASTER = "127.0.0.1:10911"
TOPIC = "RMQ_WATCHDOG_CANARY_broker-a"

GOOD = {
    "ok": True,
    "sent_msg_id": "0100007F0000CBD5000048A9BC820100",
    "send_offset": 7,
    "send_status": "SEND_OK",
    "send_attempts": 1,
    "received": True,
    "queue_id": 0,
    "received_broker_name": "broker-a",
    "send_latency_seconds": 0.03,
    "roundtrip_seconds": 0.05,
    "error": None,
}


def line(**changes: Any) -> str:
    return json.dumps({**GOOD, **changes})


def stderr_then_sleep(text: str) -> list[str]:
    return fake_child(
        f"import sys, time; sys.stderr.write({text!r} + '\\n'); sys.stderr.flush(); time.sleep(60)"
    )


def fake_child(code: str) -> list[str]:
    """A child command running `code` instead of the real client (the canary args are ignored)."""
    return [sys.executable, "-c", code]


def printing_child(text: str, *, then: str = "") -> list[str]:
    return fake_child(f"import sys, time; sys.stdout.write({text!r}); sys.stdout.flush(); {then}")


def is_reaped(pid: int) -> bool:
    """Dead and waited for: not even a zombie is left in /proc."""
    return not Path(f"/proc/{pid}").exists()


# --------------------------------------------------------------------------- parsing


def test_parses_a_good_line() -> None:
    outcome = parse_client_output(line() + "\n")
    assert outcome.is_ok and outcome.is_received
    assert outcome.sent_msg_id == GOOD["sent_msg_id"]
    assert outcome.send_offset == 7 and outcome.queue_id == 0
    assert outcome.received_broker_name == "broker-a"
    assert outcome.send_latency_seconds == pytest.approx(0.03)


def test_takes_the_last_line_after_noise() -> None:
    text = "librocketmq says hello\n\n" + line(send_offset=9) + "\n  \n"
    assert parse_client_output(text.encode()).send_offset == 9


def test_parses_a_failure_line() -> None:
    outcome = parse_client_output(
        json.dumps({"ok": False, "received": False, "error": "No route info of this topic"})
    )
    assert not outcome.is_ok and outcome.error == "No route info of this topic"
    assert outcome.sent_msg_id is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no output"),
        ("   \n\n", "no output"),
        ("Segmentation fault", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"received": true}', "no 'ok'"),
        (line(ok="yes"), "'ok' has the wrong type"),
        (line(send_offset=True), "'send_offset' has the wrong type"),
        (line(send_offset="7"), "'send_offset' has the wrong type"),
        (line(roundtrip_seconds="fast"), "'roundtrip_seconds' has the wrong type"),
        (line().replace("0.05", "NaN"), "not a finite number"),
        (line(received=False), "ok without a received message"),
        (line(sent_msg_id=None), "ok without a received message"),
        (line(send_offset=None), "ok without a received message"),
    ],
)
def test_garbage_is_a_clear_error(text: str, problem: str) -> None:
    with pytest.raises(CanaryOutputError, match=problem):
        parse_client_output(text)


def test_invalid_utf8_does_not_crash() -> None:
    with pytest.raises(CanaryOutputError, match="not JSON"):
        parse_client_output(b"\xff\xfe\x00garbage")


@given(
    st.builds(
        ClientOutcome,
        is_ok=st.just(False),
        error=st.none() | st.text(max_size=50),
        sent_msg_id=st.none() | st.text(min_size=1, max_size=40),
        send_offset=st.none() | st.integers(0, 2**62),
        send_attempts=st.integers(0, 100),
        is_received=st.booleans(),
        queue_id=st.none() | st.integers(0, 1023),
        received_broker_name=st.none() | st.text(max_size=20),
        send_latency_seconds=st.none() | st.floats(0, 1e6),
        roundtrip_seconds=st.none() | st.floats(0, 1e6),
    )
)
def test_to_json_round_trips(outcome: ClientOutcome) -> None:
    assert parse_client_output(outcome.to_json()) == outcome


def test_child_argv_carries_every_argument() -> None:
    argv = client_argv([NS1, NS2], TOPIC, timeout_seconds=4.5, expect_broker_name="broker-a")
    assert argv[:4] == [sys.executable, "-m", "watchdog.native", "canary"]
    assert argv[argv.index("--namesrv") + 1] == f"{NS1};{NS2}"
    assert argv[argv.index("--topic") + 1] == TOPIC
    assert float(argv[argv.index("--timeout-seconds") + 1]) == 4.5
    assert argv[argv.index("--expect-broker-name") + 1] == "broker-a"
    assert "--json" in argv


def test_canary_topic_is_the_plans() -> None:
    assert canary_topic("RMQ_WATCHDOG_CANARY", "broker-a") == TOPIC


# --------------------------------------------------------------------------- the child process


def test_hung_child_is_killed_at_its_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    started = time.monotonic()
    outcome = asyncio.run(
        run_canary_client([NS1], TOPIC, timeout_seconds=1.0, command=fake_child(code))
    )
    elapsed = time.monotonic() - started
    assert not outcome.is_ok
    assert outcome.error is not None and "was killed" in outcome.error
    assert elapsed < 1.0 + 0.2 + 1.5  # timeout + default grace + Python start-up slack
    assert is_reaped(int(pid_file.read_text()))


def test_garbage_output_is_not_ok_with_a_clear_error() -> None:
    outcome = asyncio.run(
        run_canary_client(
            [NS1], TOPIC, timeout_seconds=10.0, command=printing_child("hello there\n")
        )
    )
    assert not outcome.is_ok
    assert outcome.error is not None
    assert "no usable result" in outcome.error and "not JSON" in outcome.error
    assert "exit code 0" in outcome.error


def test_good_line_from_a_child_is_returned() -> None:
    outcome = asyncio.run(
        run_canary_client([NS1], TOPIC, timeout_seconds=10.0, command=printing_child(line()))
    )
    assert outcome == parse_client_output(line())


def test_result_counts_even_if_the_child_then_hangs() -> None:
    started = time.monotonic()
    outcome = asyncio.run(
        run_canary_client(
            [NS1],
            TOPIC,
            timeout_seconds=1.0,
            command=printing_child(line() + "\n", then="time.sleep(60)"),
        )
    )
    assert outcome.is_ok and outcome.send_offset == 7
    assert time.monotonic() - started < 3.0


def test_crashing_child_names_the_signal() -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    outcome = asyncio.run(
        run_canary_client([NS1], TOPIC, timeout_seconds=10.0, command=fake_child(code))
    )
    assert not outcome.is_ok
    assert outcome.error is not None and "killed by SIGSEGV" in outcome.error


def test_endless_output_is_capped_and_does_not_hang() -> None:
    code = "import sys\nwhile True: sys.stdout.write('x' * 65536)"
    started = time.monotonic()
    outcome = asyncio.run(
        run_canary_client([NS1], TOPIC, timeout_seconds=1.0, command=fake_child(code))
    )
    assert not outcome.is_ok and outcome.error is not None and "killed" in outcome.error
    assert time.monotonic() - started < 4.0


def test_missing_command_is_not_ok() -> None:
    outcome = asyncio.run(
        run_canary_client([NS1], TOPIC, timeout_seconds=1.0, command=["/nonexistent/canary-client"])
    )
    assert not outcome.is_ok
    assert outcome.error is not None and "cannot start the canary client" in outcome.error


def test_killed_after_sending_keeps_the_sent_message() -> None:
    sent = json.dumps({"event": "sent", "msg_id": "ABC", "offset": 3, "send_latency_seconds": 0.1})
    outcome = asyncio.run(
        run_canary_client([NS1], TOPIC, timeout_seconds=1.0, command=stderr_then_sleep(sent))
    )
    assert not outcome.is_ok and not outcome.is_received
    assert outcome.sent_msg_id == "ABC" and outcome.send_offset == 3
    assert outcome.error is not None and "while reading its message back" in outcome.error


def test_killed_while_sending_says_so() -> None:
    event = json.dumps({"event": "send_attempt", "attempt": 2})
    outcome = asyncio.run(
        run_canary_client([NS1], TOPIC, timeout_seconds=1.0, command=stderr_then_sleep(event))
    )
    assert outcome.error is not None and "send attempt 2 was in progress" in outcome.error


def test_stderr_tail_is_in_the_error() -> None:
    message = "librocketmq.so: cannot open shared object"
    code = f"import sys; sys.stderr.write({message!r}); sys.exit(1)"
    outcome = asyncio.run(
        run_canary_client([NS1], TOPIC, timeout_seconds=5.0, command=fake_child(code))
    )
    assert outcome.error is not None and "cannot open shared object" in outcome.error
    assert "exit code 1" in outcome.error


def test_real_child_rejects_bad_arguments_with_one_json_line() -> None:
    async def run(*args: str) -> tuple[int, dict[str, Any]]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "watchdog.native", "canary", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode is not None
        return proc.returncode, json.loads(out)

    code, doc = asyncio.run(
        run("--namesrv", "nowhere", "--topic", TOPIC, "--timeout-seconds", "1", "--json")
    )
    assert code == 1 and doc["ok"] is False and "'nowhere' is not host:port" in doc["error"]
    code, doc = asyncio.run(
        run("--namesrv", NS1, "--topic", "bad topic", "--timeout-seconds", "1", "--json")
    )
    assert code == 1 and "--topic" in doc["error"]
    code, doc = asyncio.run(
        run("--namesrv", NS1, "--topic", TOPIC, "--timeout-seconds", "-3", "--json")
    )
    assert code == 1 and "--timeout-seconds" in doc["error"]


# --------------------------------------------------------------------------- create_topic


def ok(**ext: str) -> RemotingCommand:
    return RemotingCommand(code=0, flag=1, ext_fields=ext)


def test_create_topic_sends_the_4_9_7_header() -> None:
    broker = Replay(lambda code, ext: ok())
    asyncio.run(
        create_topic(broker, TOPIC, read_queue_nums=2, write_queue_nums=3, timeout_seconds=1)
    )
    assert broker.asked_fields == [
        (
            17,
            {
                "topic": TOPIC,
                "defaultTopic": "TBW102",
                "readQueueNums": "2",
                "writeQueueNums": "3",
                "perm": "6",
                "topicFilterType": "SINGLE_TAG",
                "topicSysFlag": "0",
                "order": "false",
            },
        )
    ]


def test_create_topic_refused_raises_remote_error() -> None:
    remark = "Can't modify topic or subscription group from slave broker"
    broker = Replay(lambda code, ext: RemotingCommand(code=1, flag=1, remark=remark))
    with pytest.raises(RemoteError, match="from slave broker") as info:
        asyncio.run(create_topic(broker, TOPIC, timeout_seconds=1))
    assert info.value.code == 1 and info.value.request_code == 17


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"topic": ""}, "empty"),
        ({"topic": "a b"}, "letters, digits"),
        ({"topic": "x" * 128}, "longer than 127"),
        ({"read_queue_nums": 0}, "read_queue_nums"),
        ({"write_queue_nums": 2000}, "write_queue_nums"),
        ({"perm": 16}, "perm"),
    ],
)
def test_create_topic_checks_arguments_before_sending(kwargs: dict[str, Any], problem: str) -> None:
    broker = Replay(lambda code, ext: ok())
    args: dict[str, Any] = {"topic": TOPIC, **kwargs}
    with pytest.raises(ValueError, match=problem):
        asyncio.run(create_topic(broker, timeout_seconds=1, **args))
    assert broker.asked_fields == []


def test_topic_names_follow_the_broker_rule() -> None:
    assert check_topic_name("%RETRY%g|x_-9") == "%RETRY%g|x_-9"
    assert check_topic_name("x" * 127) == "x" * 127


# --------------------------------------------------------------------------- run_canary


def route_body(master: str | None = MASTER, *, perm: int = 6, name: str = "broker-a") -> bytes:
    addrs = {"0": master, "1": "127.0.0.1:10921"} if master else {"1": "127.0.0.1:10921"}
    return json.dumps(
        {
            "brokerDatas": [{"brokerName": name, "brokerAddrs": addrs, "cluster": "C"}],
            "queueDatas": [
                {"brokerName": name, "perm": perm, "readQueueNums": 1, "writeQueueNums": 1,
                 "topicSysFlag": 0}
            ],
            "filterServerTable": {},
        }
    ).encode()  # fmt: skip


class FakeCluster:
    """A ClientSource: one FakeServer per address."""

    def __init__(self) -> None:
        self.max_offset = 8
        self.routes: dict[str, Any] = {NS1: route_body(), NS2: route_body()}
        self.create: Any = ok()
        self.servers: dict[str, Replay] = {}

    def get(self, addr: str) -> Replay:
        if addr not in self.servers:
            self.servers[addr] = Replay(lambda code, ext: self.answer(addr, code))
        return self.servers[addr]

    def answer(self, addr: str, code: int) -> Any:
        if code == 17:
            return self.create
        if code == 105:
            route = self.routes[addr]
            if isinstance(route, bytes):
                return RemotingCommand(code=0, flag=1, body=route)
            return route
        if code == 30:
            return ok(offset=str(self.max_offset))
        raise AssertionError(f"unexpected request {code} to {addr}")


def canary(cluster: FakeCluster, child: list[str], timeout_seconds: float = 10.0) -> Any:
    return asyncio.run(
        run_canary(
            [NS1, NS2],
            MASTER,
            "broker-a",
            topic=TOPIC,
            timeout_seconds=timeout_seconds,
            pool=cluster,
            client_command=child,
        )
    )


def test_happy_path_creates_waits_runs_and_confirms() -> None:
    cluster = FakeCluster()
    result = canary(cluster, printing_child(line()))
    assert result.is_ok, result.detail
    assert result.msg_id == GOOD["sent_msg_id"]
    assert "written to broker-a at 127.0.0.1:10911 (queue 0, offset 7) and read back" in (
        result.detail
    )
    assert [code for code, _ in cluster.servers[MASTER].asked_fields] == [17, 30]
    assert cluster.servers[MASTER].asked_fields[1][1] == {"topic": TOPIC, "queueId": "0"}
    assert [code for code, _ in cluster.servers[NS1].asked_fields] == [105]


def test_slave_refusing_the_topic_fails_before_the_client() -> None:
    cluster = FakeCluster()
    cluster.create = RemotingCommand(code=1, flag=1, remark="Can't modify topic ... slave broker")
    result = canary(cluster, fake_child("raise SystemExit('must not run')"))
    assert not result.is_ok
    assert result.detail.startswith(f"cannot create canary topic {TOPIC} on {MASTER}")
    assert "slave broker" in result.detail


def test_unreachable_broker_fails_with_its_error() -> None:
    cluster = FakeCluster()
    cluster.create = RemotingConnectError(f"{MASTER}: connect failed: refused")
    result = canary(cluster, fake_child("raise SystemExit('must not run')"))
    assert not result.is_ok and "connect failed" in result.detail


def test_route_that_never_shows_the_broker_names_the_nameserver() -> None:
    cluster = FakeCluster()
    cluster.routes[NS2] = route_body(master="127.0.0.1:10999")
    started = time.monotonic()
    result = canary(cluster, fake_child("raise SystemExit('must not run')"), timeout_seconds=1.0)
    assert not result.is_ok
    assert result.detail == (
        f"route of {TOPIC} never showed broker-a at {MASTER} as master on "
        f"{NS2} (its master (id 0) is 127.0.0.1:10999) within 1 s"
    )
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    ("route", "why"),
    [
        (route_body(master=None), "it has no master (id 0)"),
        (route_body(perm=4), "its queues there are not writable"),
        (route_body(name="broker-b"), "it lists broker-b"),
        (
            RemotingCommand(code=17, flag=1, remark="No topic route info"),
            "it has no route for the topic yet",
        ),
    ],
)
def test_route_problems_are_named(route: Any, why: str) -> None:
    cluster = FakeCluster()
    cluster.routes[NS1] = route
    result = canary(cluster, fake_child("raise SystemExit('must not run')"), timeout_seconds=0.5)
    assert not result.is_ok and f"on {NS1} ({why})" in result.detail


def test_a_silent_nameserver_does_not_block_the_canary() -> None:
    cluster = FakeCluster()
    cluster.routes[NS2] = RemotingTimeout(f"{NS2}: no reply")
    result = canary(cluster, printing_child(line()))
    assert result.is_ok, result.detail


def test_no_nameserver_answering_is_reported() -> None:
    cluster = FakeCluster()
    cluster.routes = {NS1: RemotingTimeout("t1"), NS2: RemotingConnectError("refused")}
    result = canary(cluster, fake_child("raise SystemExit('must not run')"), timeout_seconds=0.5)
    assert not result.is_ok
    assert result.detail.startswith(f"no nameserver answered a route query for {TOPIC}")
    assert "refused" in result.detail and "t1" in result.detail


def test_send_failure_detail() -> None:
    failed = json.dumps({"ok": False, "received": False, "error": "No route info of this topic"})
    result = canary(FakeCluster(), printing_child(failed))
    assert not result.is_ok
    assert result.detail == "send failed: No route info of this topic"


def test_sent_but_not_received_detail() -> None:
    failed = line(ok=False, received=False, error="message not found in any queue")
    result = canary(FakeCluster(), printing_child(failed), timeout_seconds=5.0)
    assert not result.is_ok
    assert result.detail.startswith(f"message {GOOD['sent_msg_id']} sent but not received within")
    assert result.msg_id == GOOD["sent_msg_id"]


def test_message_on_another_group_fails() -> None:
    result = canary(FakeCluster(), printing_child(line(received_broker_name="broker-b")))
    assert not result.is_ok and "landed on broker-b, not broker-a" in result.detail


def test_queue_that_did_not_grow_on_the_broker_fails() -> None:
    cluster = FakeCluster()
    cluster.max_offset = 7  # the queue ends at the send offset: the message is not there
    result = canary(cluster, printing_child(line()))
    assert not result.is_ok
    assert "queue 0 of" in result.detail and "ends at 7" in result.detail


def test_hung_client_fails_within_the_timeout() -> None:
    started = time.monotonic()
    result = canary(FakeCluster(), fake_child("import time; time.sleep(60)"), timeout_seconds=2.0)
    elapsed = time.monotonic() - started
    assert not result.is_ok
    assert result.detail.startswith("send failed: canary client did not finish within")
    assert elapsed < 2.0 + 0.5
    assert result.duration_seconds == pytest.approx(elapsed, abs=0.3)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"namesrv_addrs": []}, "at least one nameserver"),
        ({"namesrv_addrs": ["nowhere"]}, "not host:port"),
        ({"broker_addr": "x"}, "not host:port"),
        ({"topic": "no spaces"}, "letters, digits"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": float("nan")}, "timeout_seconds"),
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, Any], problem: str) -> None:
    args: dict[str, Any] = {
        "namesrv_addrs": [NS1],
        "broker_addr": MASTER,
        "broker_name": "broker-a",
        "topic": TOPIC,
        "timeout_seconds": 1.0,
        "pool": FakeCluster(),
        **kwargs,
    }
    with pytest.raises(ValueError, match=problem):
        asyncio.run(run_canary(**args))


# --------------------------------------------------------------------------- probe producer


def probe_line(at: float, ok: bool, latency: float = 0.01, **extra: Any) -> str:
    return json.dumps({"at_seconds": at, "ok": ok, "latency_seconds": latency, **extra})


def test_probe_output_is_parsed_line_by_line() -> None:
    text = "\n".join(
        [
            probe_line(0.0, True, msg_id="M1", status="SEND_OK"),
            probe_line(0.2, False, 1.5, error="No route info"),
            "",
            probe_line(1.9, True, status="SLAVE_NOT_AVAILABLE"),
        ]
    )
    sends, problem = parse_probe_output(text)
    assert problem is None
    assert [s.is_ok for s in sends] == [True, False, True]
    assert sends[0].msg_id == "M1" and sends[1].error == "No route info"
    assert sends[2].status == "SLAVE_NOT_AVAILABLE"


@pytest.mark.parametrize(
    "bad",
    [
        "Segmentation fault",
        json.dumps({"at_seconds": "0", "ok": True, "latency_seconds": 0.1}),
        json.dumps({"at_seconds": 0, "ok": 1, "latency_seconds": 0.1}),
        json.dumps({"at_seconds": 0, "ok": True, "latency_seconds": True}),
        json.dumps({"at_seconds": 0, "ok": True}),
        "[]",
    ],
)
def test_probe_garbage_lines_are_skipped_and_named(bad: str) -> None:
    sends, problem = parse_probe_output(probe_line(0, True) + "\n" + bad + "\n")
    assert len(sends) == 1
    assert problem is not None and problem.startswith("unreadable probe line")


def test_probe_fatal_line_is_the_error() -> None:
    sends, problem = parse_probe_output('{"fatal": "rocketmq client unavailable: no lib"}\n')
    assert sends == () and problem == "rocketmq client unavailable: no lib"


def test_longest_write_gap_spans_failures_and_the_ends() -> None:
    sends = (
        ProbeSend(0.5, True, 0.1),  # ack at 0.6
        ProbeSend(1.0, False, 3.0),
        ProbeSend(4.0, True, 0.2),  # ack at 4.2: 3.6 s without an ack
        ProbeSend(4.5, True, 0.1),  # ack at 4.6
    )
    report = ProbeReport(sends=sends, duration_seconds=6.0)
    assert report.ok_count == 3 and report.failed_count == 1
    assert report.longest_write_gap_seconds == pytest.approx(3.6)
    assert ProbeReport(sends=sends, duration_seconds=9.0).longest_write_gap_seconds == (
        pytest.approx(9.0 - 4.6)
    )
    nothing = ProbeReport(sends=(ProbeSend(0.0, False, 1.0),), duration_seconds=5.0)
    assert nothing.longest_write_gap_seconds == 5.0
    assert nothing.failed_count == 1 and nothing.first_error is None


def test_probe_runs_the_child_and_collects_its_sends() -> None:
    lines = probe_line(0.0, True) + "\n" + probe_line(0.2, False, error="boom") + "\n"
    report = asyncio.run(
        send_probe_messages([NS1], "ProbeTopic", duration_seconds=5, command=printing_child(lines))
    )
    assert report.error is None
    assert report.ok_count == 1 and report.failed_count == 1 and report.first_error == "boom"


def test_probe_child_that_hangs_is_killed_and_keeps_its_sends() -> None:
    started = time.monotonic()
    report = asyncio.run(
        send_probe_messages(
            [NS1],
            "ProbeTopic",
            duration_seconds=0.5,
            kill_grace_seconds=0.5,
            command=printing_child(probe_line(0.0, True) + "\n", then="time.sleep(60)"),
        )
    )
    assert time.monotonic() - started < 3.0
    assert report.ok_count == 1
    assert report.error is not None and "was killed" in report.error


def test_probe_child_that_crashes_is_reported() -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGABRT)"
    report = asyncio.run(
        send_probe_messages([NS1], "ProbeTopic", duration_seconds=5, command=fake_child(code))
    )
    assert report.sends == ()
    assert report.error is not None and "killed by SIGABRT" in report.error


def test_real_probe_child_rejects_bad_arguments() -> None:
    async def run() -> tuple[int | None, bytes]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "watchdog.native", "probe", "--namesrv", NS1, "--topic", "T",
            "--probe-duration-seconds", "1", "--probe-interval-seconds", "0",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode, out

    code, out = asyncio.run(run())
    sends, problem = parse_probe_output(out)
    assert code == 1 and sends == ()
    assert problem == "--probe-interval-seconds must be a positive number, got 0.0"


def test_probe_arguments_are_checked_before_starting() -> None:
    with pytest.raises(ValueError, match="interval_seconds"):
        asyncio.run(send_probe_messages([NS1], "T", duration_seconds=1, interval_seconds=0))
    with pytest.raises(ValueError, match="duration_seconds"):
        asyncio.run(send_probe_messages([NS1], "T", duration_seconds=float("inf")))
    with pytest.raises(ValueError, match="letters, digits"):
        asyncio.run(send_probe_messages([NS1], "a b", duration_seconds=1))
    with pytest.raises(ValueError, match="not host:port"):
        asyncio.run(send_probe_messages(["x"], "T", duration_seconds=1))
