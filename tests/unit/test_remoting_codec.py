"""Frame codec: real 4.9.7 captures, the fact sheet's headers, round trips and garbage."""

from __future__ import annotations

import contextlib
import json
import struct
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchdog.remoting import (
    LANGUAGE_CODES,
    MAX_FRAME_BYTES,
    FrameDecoder,
    ProtocolError,
    RemotingCommand,
    SerializeType,
    decode_header,
    encode_frame,
)

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_FRAMES = sorted(GOLDEN.glob("*.bin"))


def decode_one(frame: bytes) -> RemotingCommand:
    commands = FrameDecoder().feed(frame)
    assert len(commands) == 1
    return commands[0]


def header_of(frame: bytes) -> bytes:
    (mark,) = struct.unpack(">i", frame[4:8])
    return frame[8 : 8 + (mark & 0xFFFFFF)]


# --- real captures ------------------------------------------------------------------------------


def test_golden_captures_exist() -> None:
    # The captures were taken from a real 4.9.7 nameserver and broker pair; see the test names.
    assert len(GOLDEN_FRAMES) >= 12


@pytest.mark.parametrize("path", GOLDEN_FRAMES, ids=lambda p: p.stem)
def test_golden_frame_decodes_as_a_java_response(path: Path) -> None:
    frame = path.read_bytes()
    cmd = decode_one(frame)
    assert cmd.is_response and not cmd.is_oneway
    # The first request of each capturing connection (the consumer-group captures came later on
    # a connection that had asked other things first).
    assert cmd.opaque == (7 if path.stem.startswith("master_20") else 1)
    assert cmd.language == "JAVA"
    assert cmd.version == 407  # MQVersion V4_9_7
    expected_type = SerializeType.ROCKETMQ if "rocketmq" in path.stem else SerializeType.JSON
    assert cmd.serialize_type == expected_type


@pytest.mark.parametrize("path", GOLDEN_FRAMES, ids=lambda p: p.stem)
def test_golden_frame_reencodes_byte_for_byte(path: Path) -> None:
    # The JSON header writer mimics fastjson (sorted keys, nulls left out, compact), and the
    # binary writer mirrors RocketMQSerializable, so a decoded real frame re-encodes exactly.
    frame = path.read_bytes()
    reencoded = encode_frame(decode_one(frame))
    if b'"extFields":{},' in header_of(frame):
        # Java sent an empty (non-null) map; an empty ext_fields is written as absent, which
        # the Java decoder treats the same way.
        expected_header = header_of(frame).replace(b'"extFields":{},', b"")
        assert header_of(reencoded) == expected_header
        assert reencoded.endswith(frame[8 + len(header_of(frame)) :])
    else:
        assert reencoded == frame


def test_golden_cluster_info_frame_fields() -> None:
    cmd = decode_one((GOLDEN / "ns_106_cluster_info.bin").read_bytes())
    assert cmd.code == 0 and cmd.remark is None and dict(cmd.ext_fields) == {}
    assert b'"brokerAddrs":{0:"127.0.0.1:21911",1:"127.0.0.1:21921"}' in cmd.body


def test_golden_error_frames_carry_code_and_remark() -> None:
    missing = decode_one((GOLDEN / "ns_105_route_missing.bin").read_bytes())
    assert missing.code == 17
    assert missing.remark is not None
    assert missing.remark.startswith("No topic route info in name server for the topic: NoSuch")
    unknown = decode_one((GOLDEN / "master_9999_unknown_code.bin").read_bytes())
    assert (unknown.code, unknown.remark) == (3, " request type 9999 not supported")
    kv = decode_one((GOLDEN / "ns_101_kv_missing.bin").read_bytes())
    assert kv.code == 22 and dict(kv.ext_fields) == {}  # Java sent "extFields":{}


def test_golden_binary_header_layout() -> None:
    frame = (GOLDEN / "master_28_runtime_info_rocketmq.bin").read_bytes()
    header = header_of(frame)
    # int16 code 0 | int8 JAVA | int16 version 407 | int32 opaque 1 | int32 flag 1 | 0 | 0
    assert header == struct.pack(">hbhiiii", 0, 0, 407, 1, 1, 0, 0)
    assert frame[4] == 1  # serialize type in the high byte of the header-length word
    cmd = decode_one(frame)
    assert cmd.body.startswith(b'{"table":{')


def test_golden_binary_header_with_ext_field() -> None:
    cmd = decode_one((GOLDEN / "ns_101_kv_value_rocketmq.bin").read_bytes())
    assert cmd.serialize_type == SerializeType.ROCKETMQ
    assert dict(cmd.ext_fields) == {"value": "v=1"}
    assert cmd.code == 0 and cmd.remark is None


# --- the fact sheet's example headers -------------------------------------------------------------

FACT_SHEET_REQUEST = (
    b'{"code":105,"extFields":{"topic":"TBW102"},"flag":0,"language":"JAVA","opaque":1,'
    b'"serializeTypeCurrentRPC":"JSON","version":401}'
)
FACT_SHEET_RESPONSE = (
    b'{"code":0,"flag":1,"language":"JAVA","opaque":0,"serializeTypeCurrentRPC":"JSON",'
    b'"version":403}'
)


def test_fact_sheet_request_header_encodes_exactly() -> None:
    cmd = RemotingCommand(
        code=105, opaque=1, language="JAVA", version=401, ext_fields={"topic": "TBW102"}
    )
    frame = encode_frame(cmd)
    assert header_of(frame) == FACT_SHEET_REQUEST
    assert struct.unpack(">i", frame[:4])[0] == 4 + len(FACT_SHEET_REQUEST)


def test_fact_sheet_headers_decode() -> None:
    request = decode_header(0, FACT_SHEET_REQUEST)
    assert (request.code, request.opaque, request.version, request.is_response) == (
        105,
        1,
        401,
        False,
    )
    assert dict(request.ext_fields) == {"topic": "TBW102"}
    response = decode_header(0, FACT_SHEET_RESPONSE)
    assert response.is_response and response.code == 0 and response.version == 403
    assert encode_frame(response)[8:] == FACT_SHEET_RESPONSE


def test_json_header_without_optional_fields_gets_java_defaults() -> None:
    cmd = decode_header(0, b'{"code":28}')
    assert (cmd.opaque, cmd.flag, cmd.version, cmd.language, cmd.remark) == (0, 0, 0, "OTHER", None)


def test_binary_header_with_remark_and_several_ext_fields() -> None:
    cmd = RemotingCommand(
        code=17,
        opaque=-7,
        flag=3,
        language="GO",
        version=317,
        remark="topic ä missing",
        ext_fields={"topic": "T", "queueId": "3", "empty": ""},
        body=b"\x00\x01",
        serialize_type=SerializeType.ROCKETMQ,
    )
    frame = encode_frame(cmd)
    decoded = decode_one(frame)
    assert decoded == cmd
    assert decoded.is_response and decoded.is_oneway
    assert frame[8:10] == struct.pack(">h", 17) and frame[10] == LANGUAGE_CODES["GO"] == 9


# --- round trips --------------------------------------------------------------------------------

int32s = st.integers(-(2**31), 2**31 - 1)
int16s = st.integers(-(2**15), 2**15 - 1)
texts = st.text(max_size=40)
commands = st.builds(
    RemotingCommand,
    code=int16s,
    opaque=int32s,
    flag=int32s,
    language=st.sampled_from(sorted(LANGUAGE_CODES)),
    version=int16s,
    remark=st.none() | texts.filter(bool),
    ext_fields=st.dictionaries(texts, texts, max_size=6),
    body=st.binary(max_size=300),
    serialize_type=st.sampled_from(SerializeType),
)


@given(commands)
def test_encode_then_decode_is_identity(cmd: RemotingCommand) -> None:
    assert decode_one(encode_frame(cmd)) == cmd


def _reference_header(cmd: RemotingCommand) -> bytes:
    """The header as the codec wrote every one before the per-request-kind template cache."""
    obj: dict[str, object] = {"code": cmd.code}
    if cmd.ext_fields:
        obj["extFields"] = dict(cmd.ext_fields)
    obj.update(flag=cmd.flag, language=cmd.language, opaque=cmd.opaque)
    if cmd.remark is not None:
        obj["remark"] = cmd.remark
    obj.update(serializeTypeCurrentRPC="JSON", version=cmd.version)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


requests = st.builds(
    RemotingCommand,
    code=int16s,
    opaque=int32s,
    flag=int32s,
    # Any text, not only the known names: the cached template must escape it like json.dumps.
    language=st.sampled_from(sorted(LANGUAGE_CODES)) | st.text(max_size=20),
    version=int16s,
    remark=st.none() | texts,
    ext_fields=st.none().map(lambda _: {}) | st.dictionaries(texts, texts, max_size=3),
    body=st.binary(max_size=50),
)


@given(requests, int32s)
def test_json_header_with_another_opaque_is_the_reference_header(
    cmd: RemotingCommand, opaque: int
) -> None:
    expected = replace(cmd, opaque=opaque)
    for _ in range(2):  # the second time from the cached template
        frame = encode_frame(cmd, opaque=opaque)
        assert frame == encode_frame(expected)
        assert header_of(frame) == _reference_header(expected)


@given(commands, int32s)
def test_opaque_override_equals_replacing_the_opaque(cmd: RemotingCommand, opaque: int) -> None:
    assert encode_frame(cmd, opaque=opaque) == encode_frame(replace(cmd, opaque=opaque))


def test_opaque_override_is_range_checked() -> None:
    with pytest.raises(ValueError, match="opaque"):
        encode_frame(RemotingCommand(code=28), opaque=2**31)


@given(st.lists(commands, min_size=1, max_size=5), st.data())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_any_chunking_of_valid_frames_yields_the_same_commands(
    cmds: list[RemotingCommand], data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(c) for c in cmds)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    decoder = FrameDecoder()
    out: list[RemotingCommand] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        out += decoder.feed(stream[start:cut])
        start = cut
    assert out == cmds
    assert decoder.buffered_bytes == 0


def test_byte_by_byte_feeding() -> None:
    frame = (GOLDEN / "ns_106_cluster_info.bin").read_bytes()
    decoder = FrameDecoder()
    results = [decoder.feed(frame[i : i + 1]) for i in range(len(frame))]
    assert all(r == [] for r in results[:-1])
    assert len(results[-1]) == 1 and results[-1][0].code == 0


# --- garbage ------------------------------------------------------------------------------------


def frame_with(length: int, mark: int, rest: bytes = b"") -> bytes:
    return struct.pack(">ii", length, mark) + rest


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (struct.pack(">i", 3), "impossible frame length 3"),
        (struct.pack(">i", -1), "impossible frame length -1"),
        (b"\xff\xff\xff\xff", "impossible frame length"),
        (struct.pack(">i", MAX_FRAME_BYTES - 3), "exceeds"),
        (struct.pack(">i", 2**31 - 1), "exceeds"),
        (frame_with(8, 5), "header length 5 is longer than the 8-byte frame"),
        (frame_with(8, (2 << 24) | 4, b"abcd"), "unknown serialize type 2"),
        (frame_with(8, 4, b"\xff\xfe{}"), "undecodable JSON header"),
        (frame_with(8, 4, b"[12]"), "not an object"),
        (frame_with(8, 4, b'{"a"'), "undecodable JSON header"),
        (frame_with(12, 8, b'{"x": 1}'), "'code' is not an integer"),
        (frame_with(16, 12, b'{"code":"1"}'), "'code' is not an integer"),
        (frame_with(8, (1 << 24) | 4, b"\0\0\0\0"), "shorter than the fixed part"),
        (
            frame_with(4 + 21, (1 << 24) | 21, struct.pack(">hbhiiii", 0, 0, 1, 1, 1, 99, 0)),
            "remark length 99 overruns",
        ),
        (
            frame_with(4 + 21, (1 << 24) | 21, struct.pack(">hbhiiii", 0, 0, 1, 1, 1, 0, 5)),
            "ext length 5 does not match",
        ),
        (
            frame_with(
                4 + 27,
                (1 << 24) | 27,
                struct.pack(">hbhiiii", 0, 0, 1, 1, 1, 0, 6) + struct.pack(">hi", 9, 0),
            ),
            "ext key length 9 overruns",
        ),
    ],
)
def test_garbage_raises_protocol_error_naming_the_problem(data: bytes, message: str) -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match=message.replace("(", r"\(")):
        decoder.feed(data)
    assert decoder.is_failed


def test_oversize_is_rejected_from_the_length_prefix_alone() -> None:
    # The limit counts the 4-byte prefix, like Netty's LengthFieldBasedFrameDecoder(16 MiB).
    decoder = FrameDecoder()
    assert decoder.feed(struct.pack(">i", MAX_FRAME_BYTES - 4)) == []  # the largest legal one
    with pytest.raises(ProtocolError, match="exceeds"):
        FrameDecoder().feed(struct.pack(">i", MAX_FRAME_BYTES - 3))


def test_a_failed_decoder_stays_failed() -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(b"\xff\xff\xff\xff")
    good = encode_frame(RemotingCommand(code=1))
    with pytest.raises(ProtocolError, match="already failed"):
        decoder.feed(good)


def test_garbage_after_a_good_frame_fails_the_whole_feed() -> None:
    # Garbage after a good frame in the same chunk fails the whole feed: the connection is dead
    # anyway, and the pending requests all get the ProtocolError.
    good = encode_frame(RemotingCommand(code=1, flag=1))
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(good + b"\xff\xff\xff\xff")


@given(st.binary(max_size=400), st.data())
def test_random_bytes_in_random_chunks_only_ever_raise_protocol_error(
    garbage: bytes, data: st.DataObject
) -> None:
    decoder = FrameDecoder()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(garbage)), max_size=8)))
    start = 0
    try:
        for cut in [*cuts, len(garbage)]:
            for cmd in decoder.feed(garbage[start:cut]):
                assert isinstance(cmd, RemotingCommand)
            start = cut
    except ProtocolError:
        assert decoder.is_failed
    # Whatever was not rejected is at most one incomplete frame waiting for more bytes.
    assert decoder.buffered_bytes <= len(garbage)


@given(commands, st.integers(0, 2000), st.binary(min_size=1, max_size=8))
def test_corrupting_a_valid_frame_never_raises_anything_else(
    cmd: RemotingCommand, position: int, patch: bytes
) -> None:
    frame = bytearray(encode_frame(cmd))
    position %= len(frame)
    frame[position : position + len(patch)] = patch
    with contextlib.suppress(ProtocolError):
        FrameDecoder().feed(bytes(frame))


def test_encode_rejects_what_cannot_be_framed() -> None:
    with pytest.raises(ValueError, match="opaque"):
        encode_frame(RemotingCommand(code=1, opaque=2**31))
    with pytest.raises(ValueError, match="code"):
        encode_frame(RemotingCommand(code=40000, serialize_type=SerializeType.ROCKETMQ))
    with pytest.raises(ValueError, match="language"):
        encode_frame(
            RemotingCommand(code=1, language="COBOL", serialize_type=SerializeType.ROCKETMQ)
        )
    with pytest.raises(ValueError, match="exceeds"):
        encode_frame(RemotingCommand(code=1, body=b"\0" * MAX_FRAME_BYTES))


def test_command_predicates_and_hashing() -> None:
    request = RemotingCommand(code=28)
    assert not request.is_response and not request.is_oneway
    assert RemotingCommand(code=0, flag=1).is_response
    assert RemotingCommand(code=0, flag=2).is_oneway
    assert hash(request) == hash(RemotingCommand(code=28))  # ext_fields/body stay out of the hash
    assert json.loads(header_of(encode_frame(request)))["language"] == "PYTHON"
