"""Counting the messages in a slice of a RocketMQ 4.x commit log, and reading it from a host."""

from __future__ import annotations

import asyncio
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchdog.act._commitlog import (
    BLANK_MAGIC_CODE,
    MESSAGE_MAGIC_CODE,
    CommitLogError,
    CommitLogTail,
    commitlog_dir,
    count_messages,
    read_commitlog_tail,
)
from watchdog.hosts import LocalBackend
from watchdog.model import PropertiesFile

# The first record of a real RocketMQ 4.9.7 broker's commit log (sandbox master, librocketmq
# producer, topic ProbeTopic, body "message 0 " + 200 x, keys k0), copied with xxd.
REAL_RECORD = bytes.fromhex(
    "0000017fdaa320a70d7ab88f0000000000000000000000000000000000000000000000000000"
    "0000000001a2354c52017f0000010000d744000001a2354c52237f00000100006e6500000000"
    "0000000000000000000000d26d657373616765203020" + "78" * 200 + "0a50726f6265546f706963"
    "00484b455953016b3002554e49515f4b455901303130303030374630303030303432413030303038"
    "314543433230423031303002434c5553544552015864636c617373436c7573746572"
)


def encode(
    topic: str,
    body: bytes,
    physical_offset: int,
    *,
    properties: str = "",
    sysflag: int = 0,
    queue_id: int = 0,
    queue_offset: int = 0,
    flag: int = 0,
    born_timestamp: int = 0,
    born_host: bytes = b"\x7f\x00\x00\x01\x00\x00\xd7\x44",
    store_timestamp: int = 0,
    store_host: bytes = b"\x7f\x00\x00\x01\x00\x00\x6e\x65",
    reconsume_times: int = 0,
    prepared_offset: int = 0,
    body_crc: int | None = None,
) -> bytes:
    """One message in the 4.x (v1) commit log layout, as CommitLog.MessageExtEncoder writes it."""
    topic_bytes = topic.encode()
    props = properties.encode()
    crc = zlib.crc32(body) & 0x7FFFFFFF if body_crc is None else body_crc
    rest = (
        struct.pack(
            ">iiiqqiq", crc, queue_id, flag, queue_offset, physical_offset, sysflag, born_timestamp
        )
        + born_host
        + struct.pack(">q", store_timestamp)
        + store_host
        + struct.pack(">iqi", reconsume_times, prepared_offset, len(body))
        + body
        + struct.pack(">b", len(topic_bytes))
        + topic_bytes
        + struct.pack(">h", len(props))
        + props
    )
    return struct.pack(">iI", 8 + len(rest), MESSAGE_MAGIC_CODE) + rest


def blank(size: int) -> bytes:
    """The END_OF_FILE record: its head, and zeros (a fresh mapped file) to the file's end."""
    return struct.pack(">iI", size, BLANK_MAGIC_CODE) + bytes(size - 8)


def build_log(
    specs: list[tuple[str, bytes]], start: int = 0
) -> tuple[bytes, list[tuple[int, int]]]:
    """Messages back to back from physical offset `start`; returns the bytes and each message's
    (offset, size)."""
    out = bytearray()
    spans = []
    for topic, body in specs:
        msg = encode(topic, body, start + len(out))
        spans.append((start + len(out), len(msg)))
        out += msg
    return bytes(out), spans


def test_a_real_4_9_7_record_parses_and_the_encoder_reproduces_it() -> None:
    tail = count_messages(REAL_RECORD, 0, 0)
    assert (tail.messages, tail.message_bytes, tail.crc_mismatches) == (1, 383, 0)
    assert tail.topics[0].topic == "ProbeTopic" and tail.is_exact
    props = REAL_RECORD[311:].decode()
    again = encode(
        "ProbeTopic",
        b"message 0 " + b"x" * 200,
        0,
        properties=props,
        born_timestamp=0x000001A2354C5201,
        store_timestamp=0x000001A2354C5223,
    )
    assert again == REAL_RECORD


def test_counts_messages_at_and_after_the_offset_with_topics() -> None:
    log, spans = build_log(
        [("A", b"1"), ("B", b"22"), ("A", b"333"), ("C", b""), ("A", b"x" * 1000)], start=5000
    )
    tail = count_messages(log, 5000, spans[1][0], top_topics=2)
    assert tail.messages == 4
    assert tail.message_bytes == sum(size for _, size in spans[1:])
    assert (tail.first_offset, tail.last_offset) == (spans[1][0], spans[4][0])
    assert tail.last_end_offset == 5000 + len(log)
    assert tail.straddles is False and tail.straddling_offset is None
    assert [(t.topic, t.messages) for t in tail.topics] == [("A", 2), ("B", 1)]
    assert tail.topic_total == 3
    assert tail.is_exact and not tail.partial
    assert "4 message(s)" in tail.summary() and "1 more" in tail.summary()


def test_an_offset_inside_a_message_is_a_straddle() -> None:
    log, spans = build_log([("T", b"a" * 50)] * 3, start=1 << 30)
    inside = spans[1][0] + 17
    tail = count_messages(log, 1 << 30, inside)
    assert tail.messages == 1 and tail.first_offset == spans[2][0]
    assert tail.straddles is True and tail.straddling_offset == spans[1][0]
    assert "straddling" in tail.summary()


def test_offset_past_the_data_and_at_its_end() -> None:
    log, _ = build_log([("T", b"a")] * 2)
    at_end = count_messages(log, 0, len(log))
    assert at_end.messages == 0 and at_end.straddles is False and at_end.is_exact
    beyond = count_messages(log, 0, len(log) + 10)
    assert beyond.messages == 0 and beyond.straddles is None and not beyond.is_exact


def test_a_slice_starting_mid_message_resynchronises() -> None:
    log, spans = build_log([("T", b"b" * 300)] * 4, start=12345)
    cut = 100  # inside the first message
    tail = count_messages(log[cut:], 12345 + cut, spans[2][0])
    assert tail.leading_bytes == spans[1][0] - 12345 - cut
    assert tail.messages == 2 and tail.straddles is False and tail.is_exact
    # the promotion point inside the skipped bytes: nothing can be said about it
    unknown = count_messages(log[cut:], 12345 + cut, 12345 + cut + 5)
    assert unknown.messages == 3 and unknown.straddles is None and not unknown.is_exact


def test_a_body_holding_a_magic_code_does_not_fool_the_resync() -> None:
    fake = struct.pack(">iI", 200, MESSAGE_MAGIC_CODE) + bytes(20) + struct.pack(">q", 0)
    log, spans = build_log([("T", fake * 3), ("T", b"ok")])
    tail = count_messages(log[10:], 10, 0)
    assert tail.messages == 1 and tail.first_offset == spans[1][0]
    assert tail.leading_bytes == spans[1][0] - 10


def test_blank_filler_at_a_file_end_and_messages_across_two_files() -> None:
    file_size = 2048
    first, spans1 = build_log([("A", b"a" * 400)] * 3)
    first += blank(file_size - len(first))
    second, spans2 = build_log([("B", b"b" * 100)] * 2, start=file_size)
    log = first + second
    tail = count_messages(log, 0, spans1[2][0])
    assert tail.messages == 3
    assert [(t.topic, t.messages) for t in tail.topics] == [("B", 2), ("A", 1)]
    assert tail.last_end_offset == file_size + len(second) and tail.is_exact
    # an offset inside the padding: no message straddles it
    padding = count_messages(log, 0, spans1[2][0] + spans1[2][1] + 100)
    assert padding.messages == 2 and padding.straddles is False and padding.is_exact
    # a slice that starts inside the padding finds the next file's first message
    mid = spans1[2][0] + spans1[2][1] + 50
    late = count_messages(log[mid:], mid, file_size)
    assert late.messages == 2 and late.leading_bytes == file_size - mid and late.is_exact
    # a slice ending inside the padding: nothing more, nothing cut
    short = count_messages(log[: file_size - 10], 0, 0)
    assert short.messages == 3 and not short.ended_inside_message and short.is_exact


def test_blank_padding_with_stale_bytes_is_believed_when_a_message_follows() -> None:
    file_size = 1024
    first, _ = build_log([("A", b"a" * 400)])
    pad = bytearray(blank(file_size - len(first)))
    pad[20:30] = b"stalestale"  # a transient store pool's reused buffer
    second, _ = build_log([("B", b"b")], start=file_size)
    tail = count_messages(first + bytes(pad) + second, 0, 0)
    assert tail.messages == 2 and tail.unreadable_bytes == 0 and tail.is_exact


def test_the_slice_ending_inside_a_message_is_said() -> None:
    log, spans = build_log([("T", b"c" * 100)] * 3)
    for cut in (spans[2][0] + 3, spans[2][0] + 20, spans[2][0] + 60, len(log) - 1):
        tail = count_messages(log[:cut], 0, 0)
        assert tail.messages == 2 and tail.ended_inside_message and not tail.is_exact
        assert "ends inside a message" in tail.summary()


def test_zeros_after_the_log_are_its_end() -> None:
    log, _ = build_log([("T", b"d")] * 2, start=64)
    tail = count_messages(log + bytes(4096), 64, 64)
    assert tail.messages == 2 and tail.log_end_offset == 64 + len(log) and tail.is_exact
    after = count_messages(log + bytes(4096), 64, 64 + len(log) + 100)
    assert after.messages == 0 and after.straddles is False


def test_a_corrupt_record_is_reported_not_counted() -> None:
    log, spans = build_log([("T", b"e" * 80)] * 4)
    bad = bytearray(log)
    bad[spans[1][0] + 5] ^= 0xFF  # the second message's magic code
    tail = count_messages(bytes(bad), 0, 0)
    assert tail.messages == 3 and tail.unreadable_bytes == spans[1][1]
    assert tail.first_unreadable_offset == spans[1][0] and not tail.is_exact
    assert "unreadable" in tail.summary()
    wrong_offset = bytearray(log)
    wrong_offset[spans[2][0] + 28 + 7] ^= 1  # PHYSICALOFFSET
    assert count_messages(bytes(wrong_offset), 0, 0).unreadable_bytes == spans[2][1]
    wrong_size = bytearray(log)
    struct.pack_into(">i", wrong_size, spans[3][0] + 84, 81)  # BODYLENGTH
    assert count_messages(bytes(wrong_size), 0, 0).messages == 3


def test_a_body_crc_mismatch_is_counted_but_reported() -> None:
    msg = encode("T", b"body", 0, body_crc=1234)
    tail = count_messages(msg, 0, 0)
    assert tail.messages == 1 and tail.crc_mismatches == 1
    assert "CRC" in tail.summary()


def test_ipv6_hosts_change_the_layout() -> None:
    v6 = bytes(16) + b"\x00\x00\x27\x10"
    first = encode("V6", b"x", 0, sysflag=0x30, born_host=v6, store_host=v6)
    second = encode("V4", b"y", len(first), sysflag=0x10, born_host=v6)
    tail = count_messages(first + second, 0, 0)
    assert tail.messages == 2 and tail.is_exact
    # the flags and the addresses must agree
    lying = encode("V6", b"x", 0, sysflag=0x20)
    assert count_messages(lying, 0, 0).messages == 0


def test_bad_arguments_raise_the_declared_error() -> None:
    with pytest.raises(CommitLogError):
        count_messages(b"", -1, 0)
    with pytest.raises(CommitLogError):
        count_messages(b"", 0, -5)


# --------------------------------------------------------------------------- fuzzing


def _check_invariants(tail: CommitLogTail, data: bytes, base: int) -> None:
    assert isinstance(tail, CommitLogTail)
    assert tail.messages >= 0 and 0 <= tail.message_bytes <= len(data)
    assert tail.messages * 91 <= tail.message_bytes
    assert sum(t.messages for t in tail.topics) <= tail.messages
    assert tail.leading_bytes + tail.unreadable_bytes <= len(data)
    assert (tail.first_offset is None) == (tail.messages == 0)
    if tail.first_offset is not None:
        assert tail.last_offset is not None and tail.last_end_offset is not None
        assert base <= tail.first_offset <= tail.last_offset < tail.last_end_offset
        assert tail.last_end_offset <= base + len(data)
    assert tail.end_offset == base + len(data)
    tail.summary()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048), st.integers(0, 1 << 40), st.integers(0, 1 << 40))
def test_garbage_never_raises(data: bytes, base: int, from_offset: int) -> None:
    _check_invariants(count_messages(data, base, from_offset), data, base)


_TOPICS = st.sampled_from(["A", "B", "TopicC", "é"])
_BODIES = st.binary(max_size=120)


@st.composite
def mangled_logs(draw: st.DrawFn) -> tuple[bytes, int]:
    """Valid records, blanks and magic codes spliced with garbage and byte flips."""
    base = draw(st.integers(0, 1 << 32))
    out = bytearray()
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["msg", "msg", "blank", "garbage", "magic"]))
        if kind == "msg":
            out += encode(draw(_TOPICS), draw(_BODIES), base + len(out))
        elif kind == "blank":
            out += blank(draw(st.integers(8, 300)))
        elif kind == "garbage":
            out += draw(st.binary(max_size=64))
        else:
            magic = draw(st.sampled_from([MESSAGE_MAGIC_CODE, BLANK_MAGIC_CODE]))
            size = draw(st.integers(-(1 << 31), (1 << 31) - 1))
            out += struct.pack(">iIiiiqq", size, magic, 0, 0, 0, 0, base + len(out))
    for _ in range(draw(st.integers(0, 3))):
        if out:
            i = draw(st.integers(0, len(out) - 1))
            out[i] ^= draw(st.integers(1, 255))
    return bytes(out), base


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(mangled_logs(), st.integers(0, 4000), st.integers(0, 4000))
def test_mangled_logs_never_raise(log: tuple[bytes, int], cut: int, rel_from: int) -> None:
    data, base = log
    cut = min(cut, len(data))
    _check_invariants(
        count_messages(data[cut:], base + cut, base + rel_from), data[cut:], base + cut
    )


@settings(max_examples=300)
@given(
    st.lists(st.tuples(_TOPICS, _BODIES), max_size=10),
    st.integers(0, 3000),
    st.integers(0, 3000),
    st.integers(0, 3000),
)
def test_any_slice_of_a_valid_log_counts_exactly_or_says_why_not(
    specs: list[tuple[str, bytes]], a: int, b: int, f: int
) -> None:
    base = 777
    log, spans = build_log(specs, start=base)
    a, b = sorted((min(a, len(log)), min(b, len(log))))
    tail = count_messages(log[a:b], base + a, base + f)
    truth = [s for s, size in spans if s >= base + f and s >= base + a and s + size <= base + b]
    if tail.start_offset <= tail.from_offset and tail.straddles is not None:
        assert tail.messages == len(truth)
    else:
        assert tail.messages <= len(truth)
    assert tail.messages <= len(truth)
    cut_inside = any(s < base + b < s + size and s >= base + a for s, size in spans)
    if cut_inside and tail.leading_bytes == 0:
        assert tail.ended_inside_message


# --------------------------------------------------------------------------- reading a host


class _NoXxd(LocalBackend):
    async def has_command(self, name: str) -> bool:
        return False if name == "xxd" else await super().has_command(name)


def _write_store(directory: Path, file_size: int) -> tuple[bytes, list[tuple[int, int]]]:
    """Two full mapped files and an empty preallocated third, as a broker leaves them."""
    directory.mkdir(parents=True)
    first, spans1 = build_log([("A", b"a" * 200)] * 4)
    first += blank(file_size - len(first))
    second, spans2 = build_log([("B", b"b" * 150)] * 3, start=file_size)
    (directory / f"{0:020d}").write_bytes(first)
    (directory / f"{file_size:020d}").write_bytes(second + bytes(file_size - len(second)))
    (directory / f"{2 * file_size:020d}").write_bytes(bytes(file_size))
    (directory / "not-a-log").write_bytes(b"x")
    return first + second, spans1 + spans2


@pytest.mark.parametrize("host", [LocalBackend(), _NoXxd()], ids=["xxd", "od"])
def test_reading_a_store_on_a_host(tmp_path: Path, host: LocalBackend) -> None:
    file_size = 4096
    log, spans = _write_store(tmp_path / "commitlog", file_size)
    end = file_size + sum(size for s, size in spans if s >= file_size)
    d = str(tmp_path / "commitlog")
    # from a message inside the first file, to the log end given or found
    for to in (end, None):
        tail = asyncio.run(read_commitlog_tail(host, d, spans[2][0], to, chunk_bytes=1000))
        assert tail.messages == 5 and tail.is_exact, tail
        assert [(t.topic, t.messages) for t in tail.topics] == [("B", 3), ("A", 2)]
        assert tail.last_end_offset == end
    # the promotion point inside a message, with too short a look back, then long enough
    inside = spans[1][0] + 10
    blind = asyncio.run(read_commitlog_tail(host, d, inside, end, lookback_bytes=5))
    assert blind.messages == 5 and blind.straddles is None and not blind.is_exact
    seen = asyncio.run(read_commitlog_tail(host, d, inside, end, lookback_bytes=300))
    assert seen.messages == 5 and seen.straddles is True
    assert seen.straddling_offset == spans[1][0] and seen.is_exact
    # at a file start
    at_file = asyncio.run(read_commitlog_tail(host, d, file_size, None))
    assert at_file.messages == 3 and at_file.straddles is False and at_file.is_exact
    # past the end of the last file
    past = asyncio.run(read_commitlog_tail(host, d, 3 * file_size + 100, None, lookback_bytes=0))
    assert past.messages == 0 and not past.partial and past.end_offset == past.start_offset
    # bounded by max_bytes
    capped = asyncio.run(read_commitlog_tail(host, d, 0, None, max_bytes=700))
    assert capped.partial and "max_bytes" in capped.note and capped.messages == 700 // spans[0][1]
    assert capped.ended_inside_message and "PARTIAL" in capped.summary()


def test_reading_across_directories_and_failures(tmp_path: Path) -> None:
    file_size = 4096
    _, spans = _write_store(tmp_path / "one", file_size)
    second = tmp_path / "one" / f"{file_size:020d}"
    (tmp_path / "two").mkdir()
    second.rename(tmp_path / "two" / second.name)
    d = f"{tmp_path / 'one'},{tmp_path / 'two'}"
    tail = asyncio.run(read_commitlog_tail(LocalBackend(), d, 0, None))
    assert tail.messages == 7 and tail.is_exact
    with pytest.raises(CommitLogError, match="ls"):
        asyncio.run(read_commitlog_tail(LocalBackend(), str(tmp_path / "missing"), 0, None))
    (tmp_path / "empty").mkdir()
    empty = asyncio.run(read_commitlog_tail(LocalBackend(), str(tmp_path / "empty"), 10, None))
    assert empty.messages == 0 and "no commit log files" in empty.note
    with pytest.raises(CommitLogError):
        asyncio.run(read_commitlog_tail(LocalBackend(), d, 0, None, max_bytes=0))


def test_a_missing_file_in_the_middle_makes_the_read_partial(tmp_path: Path) -> None:
    file_size = 4096
    _write_store(tmp_path / "log", file_size)
    (tmp_path / "log" / f"{file_size:020d}").unlink()
    (tmp_path / "log" / f"{0:020d}").write_bytes(
        (tmp_path / "log" / f"{0:020d}").read_bytes()[:3000]
    )
    tail = asyncio.run(read_commitlog_tail(LocalBackend(), str(tmp_path / "log"), 0, 3 * file_size))
    assert tail.partial and "next file starts" in tail.note and not tail.is_exact


def test_commitlog_dir_from_properties() -> None:
    both = PropertiesFile.parse("storePathRootDir=/data/store\nstorePathCommitLog=/log/cl\n")
    assert commitlog_dir(both) == "/log/cl"
    root = PropertiesFile.parse("storePathRootDir=/data/store/\n")
    assert commitlog_dir(root) == "/data/store/commitlog"
    with pytest.raises(CommitLogError):
        commitlog_dir(PropertiesFile.parse("brokerId=0\n"))
