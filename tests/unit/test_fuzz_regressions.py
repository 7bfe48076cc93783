"""One named test per fuzzing finding (fuzz/README.md lists them); the inputs are also in the
committed corpus, fuzz/corpus/<target>/regress-*, so every harness replays them too."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from fuzz.targets import CORPUS_DIR, TARGETS, Reply
from watchdog.remoting import (
    FLAG_RESPONSE,
    FrameDecoder,
    ProtocolError,
    RemotingCommand,
    _fastjson,
    broker_config_of,
    broker_runtime_info_of,
    decode_header,
    get_max_offset,
    parse_cluster_info,
    parse_kv_table,
    parse_topic_route,
    wipe_write_perm_of_broker,
)
from watchdog.remoting._client import _Connection

pytestmark = pytest.mark.timeout(60)


def corpus(target: str, name: str) -> bytes:
    path: Path = CORPUS_DIR / target / f"regress-{name}"
    return path.read_bytes()


def replay(target: str, name: str) -> None:
    """The committed input goes through its harness cleanly."""
    TARGETS[target](corpus(target, name))


def json_frame(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">ii", 4 + len(header) + len(body), len(header)) + header + body


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def response(body: bytes = b"", **ext: str) -> RemotingCommand:
    return RemotingCommand(code=0, opaque=1, flag=FLAG_RESPONSE, ext_fields=ext, body=body)


# --- frame header ------------------------------------------------------------------------------


def test_json_header_flag_beyond_int32_is_a_protocol_error() -> None:
    # atheris, header target: the decoder returned flag 9999999999999991, which no Java peer can
    # send and which cannot be framed again.
    replay("header", "flag_beyond_int32")
    data = corpus("header", "flag_beyond_int32")
    with pytest.raises(ProtocolError, match="'flag' is not a 32-bit integer"):
        decode_header(data[0], data[1:])


@pytest.mark.parametrize("field", ["code", "opaque", "flag", "version"])
@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 10**30])
def test_json_header_int_fields_stay_java_ints(field: str, value: int) -> None:
    header = {"code": 0, "flag": 1, "opaque": 1, "version": 407, field: value}
    with pytest.raises(ProtocolError, match="32-bit"):
        FrameDecoder().feed(json_frame(json.dumps(header).encode()))


def test_server_request_with_opaque_beyond_int32_does_not_break_the_connection() -> None:
    # A server's request with opaque 2**40: decoded as valid, then answering it raised
    # ValueError from encode_frame inside data_received, i.e. into asyncio's transport.
    replay("client", "opaque_beyond_int32")
    conn = _Connection("fuzz:1")
    aborted: list[bool] = []

    class Transport(asyncio.Transport):
        def write(self, data: bytes | bytearray | memoryview) -> None:
            raise AssertionError("answered a request it should have refused to read")

        def abort(self) -> None:
            aborted.append(True)

        def is_closing(self) -> bool:
            return bool(aborted)

    async def receive() -> None:  # as asyncio calls a protocol: in its running loop
        conn.connection_made(Transport())
        conn.data_received(corpus("client", "opaque_beyond_int32")[1:])

    asyncio.run(receive())
    assert aborted and conn.is_lost


def test_json_header_lone_surrogate_is_a_protocol_error() -> None:
    replay("header", "lone_surrogate_remark")
    data = corpus("header", "lone_surrogate_remark")
    with pytest.raises(ProtocolError, match="lone surrogate"):
        decode_header(data[0], data[1:])


def test_json_header_surrogate_pair_is_one_character() -> None:
    header = b'{"code":0,"flag":1,"opaque":1,"remark":"\\ud83d\\ude00 \\u00e9"}'
    (cmd,) = FrameDecoder().feed(json_frame(header))
    assert cmd.remark == "\U0001f600 \u00e9"


def test_json_header_nan_is_not_json() -> None:
    header = b'{"code":0,"flag":1,"opaque":1,"extFields":{"x":NaN}}'
    with pytest.raises(ProtocolError, match="NaN"):
        FrameDecoder().feed(json_frame(header))


# --- fastjson bodies ---------------------------------------------------------------------------


def test_fastjson_lone_surrogate_is_a_protocol_error() -> None:
    # atheris, fastjson target: '\u00e9\ude00' came back as a str no one can encode.
    replay("fastjson", "lone_low_surrogate")
    with pytest.raises(ProtocolError, match="lone surrogate"):
        _fastjson.loads(corpus("fastjson", "lone_low_surrogate"))


def test_fastjson_lone_surrogate_in_a_key_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="lone surrogate"):
        parse_kv_table(b'{"table":{"\\udfff":"x"}}')


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_fastjson_non_json_constants_are_refused(constant: str) -> None:
    with pytest.raises(ProtocolError, match="malformed"):
        _fastjson.loads('{"a":' + constant + "}")


def _seconds(text: str) -> float:
    started = time.perf_counter()
    with pytest.raises(ProtocolError):
        _fastjson.loads(text)
    return time.perf_counter() - started


def test_fastjson_unterminated_string_of_escaped_quotes_is_linear() -> None:
    # Review of the quoting pass, then timed: '{"a":"\"\"\"...' (no closing quote) made the
    # bare-key regex rescan the rest of the body at every quote: 32 KB took 12 s, quadratic.
    replay("fastjson", "unterminated_escaped_quotes")
    assert _seconds(corpus("fastjson", "unterminated_escaped_quotes").decode()) < 0.5
    big = '{"a":"' + '\\"' * 500_000  # 1 MB: hours before, milliseconds now
    assert _seconds(big) < 2.0


def test_fastjson_unicode_digit_is_no_bare_key() -> None:
    # The bare-key pattern used \d, which matches any script's digits: {\u0661:"x"} was quoted
    # into a key that int() reads as broker id 1.
    with pytest.raises(ProtocolError):
        parse_cluster_info('{"brokerAddrTable":{"a":{"brokerAddrs":{\u0661:"x"}}}}'.encode())


# --- cluster info ------------------------------------------------------------------------------


def test_cluster_info_broker_id_beyond_int64_is_a_protocol_error() -> None:
    # atheris, cluster_info target: a 79-digit bare key came back as a broker id.
    replay("cluster_info", "broker_id_beyond_int64")
    with pytest.raises(ProtocolError, match="not an integer broker id"):
        parse_cluster_info(corpus("cluster_info", "broker_id_beyond_int64"))


@pytest.mark.parametrize("key", [" 1", "1 ", "+1", "1_0", "\u0661", "0x1", "1.0", ""])
def test_cluster_info_broker_id_is_a_java_long(key: str) -> None:
    body = json.dumps({"brokerAddrTable": {"a": {"brokerAddrs": {key: "10.0.0.1:10911"}}}})
    with pytest.raises(ProtocolError, match="not an integer broker id"):
        parse_cluster_info(body.encode())


def test_cluster_info_broker_id_named_twice_is_a_protocol_error() -> None:
    # "1" and "01" are both broker 1: which address is it?
    replay("cluster_info", "broker_id_twice")
    with pytest.raises(ProtocolError, match="broker id 1 twice"):
        parse_cluster_info(corpus("cluster_info", "broker_id_twice"))


# --- runtime info, offsets and counts ----------------------------------------------------------


def test_runtime_info_max_offset_not_a_number_is_a_protocol_error() -> None:
    # atheris, runtime_info target: commitLogMaxOffset '~' was handed to the probe, which reads
    # it as "no offset"; '-5', ' 7' or '\u0667' became offsets no broker reported.
    replay("runtime_info", "max_offset_not_a_number")
    cmd = response(corpus("runtime_info", "max_offset_not_a_number"))
    with pytest.raises(ProtocolError, match="commitLogMaxOffset"):
        broker_runtime_info_of(cmd)


@pytest.mark.parametrize("value", ["-5", " 7", "7 ", "+7", "1_000", "\u0667", "", "9" * 20])
def test_runtime_info_max_offset_must_be_an_offset(value: str) -> None:
    body = json.dumps({"table": {"commitLogMaxOffset": value}}).encode()
    with pytest.raises(ProtocolError, match="commitLogMaxOffset"):
        broker_runtime_info_of(response(body))


def test_runtime_info_min_offset_minus_one_is_what_a_fresh_broker_says() -> None:
    # CommitLog.getMinOffset() is -1 while the log has no file: a real value, kept.
    body = b'{"table":{"commitLogMaxOffset":"0","commitLogMinOffset":"-1"}}'
    assert broker_runtime_info_of(response(body))["commitLogMinOffset"] == "-1"


@pytest.mark.parametrize("value", ["-1", " 7", "+7", "1_0", "\u0667", "07x", "9" * 20])
def test_max_offset_ext_field_must_be_a_non_negative_long(value: str) -> None:
    replay("replies", "max_offset_negative")
    with pytest.raises(ProtocolError, match="offset="):
        run(get_max_offset(Reply(response(offset=value)), "T", 0, timeout_seconds=1))


def test_max_offset_negative_reply_is_a_protocol_error() -> None:
    (reply,) = FrameDecoder().feed(corpus("replies", "max_offset_negative"))
    with pytest.raises(ProtocolError, match="offset='-1'"):
        run(get_max_offset(Reply(reply), "T", 0, timeout_seconds=1))


def test_wipe_count_must_be_a_count() -> None:
    with pytest.raises(ProtocolError, match="wipeTopicCount"):
        run(
            wipe_write_perm_of_broker(Reply(response(wipeTopicCount="-3")), "b", timeout_seconds=1)
        )


@pytest.mark.parametrize("value", [" 1", "1_0", "\u0661", "x", ""])
def test_broker_config_broker_id_must_be_a_long(value: str) -> None:
    body = f"brokerRole=SLAVE\nbrokerId={value}\n".encode()
    with pytest.raises(ProtocolError, match="brokerId"):
        broker_config_of(response(body))


# --- topic route -------------------------------------------------------------------------------


def test_topic_route_ints_stay_java_ints() -> None:
    # hypothesis, topic_route target: topicSysFlag 2**31 was accepted as a Java int.
    replay("topic_route", "sys_flag_beyond_int32")
    with pytest.raises(ProtocolError, match="32-bit"):
        parse_topic_route(corpus("topic_route", "sys_flag_beyond_int32"))


# --- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('cluster_name = "C"\nx = ' + "[" * 1000 + "]" * 1000, "nested too deeply"),
        ("broker_id = " + "9" * 4301, "4300 digits"),
        ('[probe]\ninterval = "' + "9" * 309 + 's"\n', "invalid duration"),
        ('[probe]\ninterval = "\u0663s"\n', "invalid duration"),
    ],
    ids=["deep nesting", "huge integer", "infinite duration", "non-ASCII digit"],
)
def test_a_hostile_config_is_one_config_error(tmp_path: Path, text: str, message: str) -> None:
    from watchdog.config import ConfigError, load_config

    path = tmp_path / "watchdog.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
