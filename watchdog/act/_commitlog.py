"""Count the messages a RocketMQ 4.x commit log holds past an offset, from a slice or a host."""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, replace
from typing import Final

from ..hosts import Host, HostError
from ..model import PropertiesFile, WatchdogError

__all__ = [
    "BLANK_MAGIC_CODE",
    "MESSAGE_MAGIC_CODE",
    "CommitLogError",
    "CommitLogTail",
    "TopicCount",
    "commitlog_dir",
    "count_messages",
    "read_commitlog_tail",
]

# store/CommitLog.java (4.9.7): MESSAGE_MAGIC_CODE = -626843481, BLANK_MAGIC_CODE = -875286124.
MESSAGE_MAGIC_CODE: Final = 0xDAA320A7
BLANK_MAGIC_CODE: Final = 0xCBD43194
# common/sysflag/MessageSysFlag.java: a 16-byte address (+4 port) instead of 4 (+4).
_BORNHOST_V6_FLAG: Final = 0x10
_STOREHOST_V6_FLAG: Final = 0x20
# TOTALSIZE, MAGICCODE, BODYCRC, QUEUEID, FLAG, QUEUEOFFSET, PHYSICALOFFSET, SYSFLAG,
# BORNTIMESTAMP: the fixed part before BORNHOST.
_FIXED_HEAD: Final = 48
_PHYSICAL_OFFSET_AT: Final = 28
_SYSFLAG_AT: Final = 36
# calMsgLength(sysFlag=0, bodyLength=0, topicLength=0, propertiesLength=0).
_MIN_MESSAGE_SIZE: Final = 91
# A BLANK record is TOTALSIZE and MAGICCODE; the rest of its mapped file is padding.
_BLANK_HEAD: Final = 8
_DEFAULT_MAX_RECORD = 1 << 30  # the default mappedFileSizeCommitLog: no record is larger
_MIB: Final = 1 << 20
# A message is at most maxMessageSize (4 MiB by default) of body plus at most 32767 bytes of
# properties, 127 of topic and its header: reading this much before the offset finds the start of
# a message straddling it.
_DEFAULT_LOOKBACK: Final = 4 * _MIB + 64 * 1024
# MessageStoreConfig.MULTI_PATH_SPLITTER (system property rocketmq.broker.multiPathSplitter).
_MULTI_PATH_SPLITTER: Final = ","
_FILE_NAME = re.compile(r"[0-9]{20}")
_NON_ZERO = re.compile(rb"[^\x00]")

_HEAD = struct.Struct(">iI")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_I16 = struct.Struct(">h")


class CommitLogError(WatchdogError):
    """The commit log could not be listed or read, or the arguments make no sense."""


@dataclass(frozen=True)
class TopicCount:
    topic: str
    messages: int
    bytes: int


@dataclass(frozen=True)
class CommitLogTail:
    """What a slice of a commit log holds at and past `from_offset` (physical offsets).

    `messages`, `message_bytes`, `first_offset`, `last_offset`, `last_end_offset` and `topics`
    describe the complete messages that start at or after `from_offset`. `straddles`: whether a
    message starts before `from_offset` and ends after it (None: the bytes there could not be
    identified, or were not read). `leading_bytes`: bytes at the start of the slice before the
    first record found (the slice began inside a message). `unreadable_bytes`: bytes after it
    that are no record (corruption, or a hole); `log_end_offset`: where the written log ends
    (zeros from there to the end of the slice). `ended_inside_message`: the slice stops inside a
    message, which is not counted. `partial`: the reader stopped before the end it was asked for
    (`max_bytes`, or a missing file), `note` says why.
    """

    from_offset: int
    start_offset: int
    end_offset: int
    messages: int
    message_bytes: int
    first_offset: int | None
    last_offset: int | None
    last_end_offset: int | None
    straddles: bool | None
    straddling_offset: int | None
    topics: tuple[TopicCount, ...]
    topic_total: int
    ended_inside_message: bool
    leading_bytes: int
    unreadable_bytes: int
    first_unreadable_offset: int | None
    log_end_offset: int | None
    crc_mismatches: int
    partial: bool = False
    note: str = ""

    @property
    def is_exact(self) -> bool:
        """Every byte from `from_offset` to the end of the slice was read and identified, so
        `messages` is the exact count of what lies past it."""
        return (
            not self.partial
            and not self.ended_inside_message
            and self.unreadable_bytes == 0
            and self.straddles is not None
            and self.start_offset <= self.from_offset
        )

    def summary(self) -> str:
        """One sentence for an operator."""
        parts = [
            f"{self.messages} message(s), {self.message_bytes} bytes at/after {self.from_offset}"
        ]
        if self.first_offset is not None:
            parts.append(f"offsets {self.first_offset}..{self.last_end_offset}")
        if self.topics:
            shown = ", ".join(f"{t.topic} {t.messages}" for t in self.topics)
            more = self.topic_total - len(self.topics)
            parts.append(f"topics {shown}" + (f" and {more} more" if more > 0 else ""))
        if self.straddles:
            parts.append(
                f"plus 1 message at {self.straddling_offset} straddling {self.from_offset}"
            )
        elif self.straddles is None:
            parts.append(f"what lies at {self.from_offset} itself is unknown")
        if self.ended_inside_message:
            parts.append(f"the data read ends inside a message at {self.end_offset}")
        if self.unreadable_bytes:
            parts.append(
                f"{self.unreadable_bytes} unreadable bytes from {self.first_unreadable_offset}"
            )
        if self.crc_mismatches:
            parts.append(f"{self.crc_mismatches} body CRC mismatch(es)")
        if self.partial:
            parts.append(f"PARTIAL: {self.note or 'not everything was read'}")
        return "; ".join(parts)


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class _Message:
    size: int
    topic: bytes
    crc_ok: bool


@dataclass(frozen=True)
class _Blank:
    size: int


@dataclass(frozen=True)
class _Truncated:
    size: int  # as its TOTALSIZE says; it runs past the end of the data


_Record = _Message | _Blank | _Truncated


class _Scanner:
    def __init__(self, data: bytes, base: int, max_record: int) -> None:
        self.data = data
        self.base = base
        self.n = len(data)
        self.max_record = max_record
        # Memo for the zero-run search: the first non-zero byte at or after `_zero_from`.
        self._zero_from = -1
        self._zero_to = -1

    def first_non_zero(self, start: int) -> int:
        """The first non-zero byte at or after start, or n."""
        if self._zero_from <= start <= self._zero_to:
            return self._zero_to
        match = _NON_ZERO.search(self.data, start)
        found = match.start() if match is not None else self.n
        self._zero_from, self._zero_to = start, found
        return found

    def record_at(self, pos: int, *, synced: bool, blank: bool = True) -> _Record | None:
        """The record at pos, or None. Unsynced (a guess while searching), a message needs its
        PHYSICALOFFSET field to be readable and equal to its position."""
        data, n = self.data, self.n
        avail = n - pos
        if avail < 8:
            return None
        size, magic = _HEAD.unpack_from(data, pos)
        if magic == BLANK_MAGIC_CODE:
            return self._blank_at(pos, size) if blank else None
        if magic != MESSAGE_MAGIC_CODE or not _MIN_MESSAGE_SIZE <= size <= self.max_record:
            return None
        if avail >= _PHYSICAL_OFFSET_AT + 8:
            if _I64.unpack_from(data, pos + _PHYSICAL_OFFSET_AT)[0] != self.base + pos:
                return None
        elif not synced:
            return None
        if size > avail:
            return _Truncated(size)
        return self._message_at(pos, size)

    def _message_at(self, pos: int, size: int) -> _Message | None:
        data = self.data
        end = pos + size
        sysflag = _I32.unpack_from(data, pos + _SYSFLAG_AT)[0]
        p = pos + _FIXED_HEAD
        p += 20 if sysflag & _BORNHOST_V6_FLAG else 8  # BORNHOST
        p += 8  # STORETIMESTAMP
        p += 20 if sysflag & _STOREHOST_V6_FLAG else 8  # STOREHOST
        p += 4 + 8  # RECONSUMETIMES, PREPAREDTRANSACTIONOFFSET
        if p + 4 > end:
            return None
        body_len = _I32.unpack_from(data, p)[0]
        p += 4
        if body_len < 0 or p + body_len + 1 > end:
            return None
        body_at = p
        p += body_len
        topic_len = data[p] if data[p] < 0x80 else -1  # a Java byte: negative is no length
        p += 1
        if topic_len < 0 or p + topic_len + 2 > end:
            return None
        topic = data[p : p + topic_len]
        p += topic_len
        props_len = _I16.unpack_from(data, p)[0]
        p += 2
        # calMsgLength: the fields must add up to TOTALSIZE exactly.
        if props_len < 0 or p + props_len != end:
            return None
        crc = zlib.crc32(data[body_at : body_at + body_len]) & 0x7FFFFFFF  # UtilAll.crc32
        return _Message(size, topic, crc == _I32.unpack_from(data, pos + 8)[0])

    def _blank_at(self, pos: int, size: int) -> _Blank | None:
        """A BLANK record ends its mapped file. Believed when its padding (after the 8-byte
        head) is zeros as far as the data goes, as a fresh mapped file is, or when the data ends
        exactly where it ends or a message follows it there (a transient store pool may leave
        stale bytes in the padding)."""
        if not _BLANK_HEAD <= size <= self.max_record:
            return None
        end = pos + size
        if self.first_non_zero(pos + _BLANK_HEAD) >= min(end, self.n):
            return _Blank(size)
        if end == self.n:
            return _Blank(size)
        if end < self.n and self.record_at(end, synced=False, blank=False) is not None:
            return _Blank(size)
        return None

    def next_record(self, start: int) -> int | None:
        """The first position >= start where a record can be recognised without context."""
        data = self.data
        message = MESSAGE_MAGIC_CODE.to_bytes(4, "big")
        blank = BLANK_MAGIC_CODE.to_bytes(4, "big")
        q_msg = data.find(message, start + 4)
        q_blank = data.find(blank, start + 4)
        while q_msg >= 0 or q_blank >= 0:
            if q_blank < 0 or 0 <= q_msg < q_blank:
                q = q_msg
                q_msg = data.find(message, q + 1)
            else:
                q = q_blank
                q_blank = data.find(blank, q + 1)
            if self.record_at(q - 4, synced=False) is not None:
                return q - 4
        return None


def count_messages(
    data: bytes,
    data_offset: int,
    from_offset: int,
    *,
    top_topics: int = 5,
    max_record_size: int = _DEFAULT_MAX_RECORD,
    at_boundary: bool = False,
) -> CommitLogTail:
    """Count the complete messages starting at or after physical offset `from_offset` in `data`,
    the commit log bytes from physical offset `data_offset` on.

    The slice may begin inside a message: the walk starts at the first position whose MAGICCODE
    is a message's and whose PHYSICALOFFSET field is that position (or a believable BLANK). A
    record that does not parse (wrong magic, fields not adding up to TOTALSIZE, PHYSICALOFFSET
    elsewhere) is skipped to the next such position, and the bytes skipped are reported, never
    counted. `at_boundary`: `data_offset` is known to begin a record (a mapped file's start), so
    what does not parse there is unreadable, not a message begun before the slice. Raises
    CommitLogError only for negative offsets or limits."""
    if data_offset < 0 or from_offset < 0 or top_topics < 0 or max_record_size < _MIN_MESSAGE_SIZE:
        raise CommitLogError(
            f"invalid arguments: data_offset {data_offset}, from_offset {from_offset}, "
            f"top_topics {top_topics}, max_record_size {max_record_size}"
        )
    data = bytes(data)
    scan = _Scanner(data, data_offset, max_record_size)
    n = len(data)
    rel_from = from_offset - data_offset
    pos = 0
    synced = at_boundary
    leading = unreadable = 0
    first_unreadable: int | None = None
    log_end: int | None = None
    ended_inside = False
    straddles: bool | None = False if at_boundary and rel_from == 0 else None
    straddling: int | None = None
    count = total = crc_bad = 0
    first: int | None = None
    last: int | None = None
    last_end: int | None = None
    per_topic: dict[bytes, list[int]] = {}

    while pos < n:
        if synced and n - pos < 8:
            ended_inside = True  # a few bytes: perhaps the start of a message, perhaps not
            break
        record = scan.record_at(pos, synced=synced)
        if record is None:
            found = scan.next_record(pos + 1)
            stop = n if found is None else found
            if not synced:
                leading = stop - pos
            elif found is None and scan.first_non_zero(pos) >= n:
                log_end = data_offset + pos
            else:
                unreadable += stop - pos
                if first_unreadable is None:
                    first_unreadable = data_offset + pos
            if found is None:
                break
            pos = found
            synced = True
            continue
        synced = True
        end = pos + record.size
        if pos == rel_from or end == rel_from:
            straddles = False
        elif pos < rel_from < end:
            straddles = isinstance(record, _Message | _Truncated)
            straddling = data_offset + pos if straddles else None
        if isinstance(record, _Truncated):
            ended_inside = True
            break
        if isinstance(record, _Message) and pos >= rel_from:
            count += 1
            total += record.size
            if first is None:
                first = data_offset + pos
            last, last_end = data_offset + pos, data_offset + end
            counts = per_topic.setdefault(record.topic, [0, 0])
            counts[0] += 1
            counts[1] += record.size
            if not record.crc_ok:
                crc_bad += 1
        if end >= n:
            break  # a BLANK whose padding runs past the data: nothing more here
        pos = end

    if straddles is None and log_end is not None and log_end <= from_offset <= data_offset + n:
        straddles = False  # it lies in the zeros past the written log
    ranked = sorted(per_topic.items(), key=lambda item: (-item[1][0], item[0]))
    return CommitLogTail(
        from_offset=from_offset,
        start_offset=data_offset,
        end_offset=data_offset + n,
        messages=count,
        message_bytes=total,
        first_offset=first,
        last_offset=last,
        last_end_offset=last_end,
        straddles=straddles,
        straddling_offset=straddling,
        topics=tuple(
            TopicCount(topic.decode("utf-8", errors="replace"), c[0], c[1])
            for topic, c in ranked[:top_topics]
        ),
        topic_total=len(per_topic),
        ended_inside_message=ended_inside,
        leading_bytes=leading,
        unreadable_bytes=unreadable,
        first_unreadable_offset=first_unreadable,
        log_end_offset=log_end,
        crc_mismatches=crc_bad,
    )


# --------------------------------------------------------------------------- reading a host


def commitlog_dir(properties: PropertiesFile) -> str:
    """storePathCommitLog (several directories joined by ','), or <storePathRootDir>/commitlog."""
    configured = properties.get("storePathCommitLog")
    if configured:
        return configured
    root = properties.get("storePathRootDir")
    if not root:
        raise CommitLogError(
            "the properties set neither storePathCommitLog nor storePathRootDir (the broker's "
            "default, ~/store of the user running it, is unknown here)"
        )
    return f"{root.rstrip('/')}/commitlog"


async def _list_files(host: Host, directory: str, timeout: float) -> dict[int, str]:
    result = await host.run(["ls", "-1", directory], timeout_seconds=timeout)
    if not result.is_ok:
        raise CommitLogError(f"{host.name}: ls {directory}: {result.summary()}")
    files: dict[int, str] = {}
    for name in result.stdout.splitlines():
        if _FILE_NAME.fullmatch(name):
            files[int(name)] = f"{directory.rstrip('/')}/{name}"
    return files


async def _read_range(
    host: Host, path: str, skip: int, count: int, *, use_xxd: bool, timeout: float
) -> bytes:
    """Bytes [skip, skip+count) of a file (fewer at its end), as hex through Host.run: its
    stdout is decoded text, which would mangle raw bytes."""
    if use_xxd:
        argv = ["xxd", "-p", "-s", str(skip), "-l", str(count), path]
    else:
        argv = ["od", "-A", "n", "-v", "-t", "x1", "-j", str(skip), "-N", str(count), path]
    result = await host.run(argv, timeout_seconds=timeout)
    if not result.is_ok:
        if not use_xxd and result.exit_code == 1 and "skip past end" in result.stderr:
            return b""  # GNU od, asked to start past the end of the file (xxd prints nothing)
        raise CommitLogError(f"{host.name}: {argv[0]} {path}: {result.summary()}")
    try:
        data = bytes.fromhex(result.stdout)
    except ValueError:
        raise CommitLogError(f"{host.name}: {argv[0]} {path}: output is not hex") from None
    if len(data) > count:
        raise CommitLogError(f"{host.name}: {argv[0]} {path}: {len(data)} bytes for {count}")
    return data


async def _has_data_at(host: Host, path: str, *, use_xxd: bool, timeout: float) -> bool:
    head = await _read_range(host, path, 0, _BLANK_HEAD, use_xxd=use_xxd, timeout=timeout)
    return _NON_ZERO.search(head) is not None


async def read_commitlog_tail(
    host: Host,
    commitlog_dir: str,
    from_offset: int,
    to_offset: int | None,
    *,
    max_bytes: int = 64 * _MIB,
    lookback_bytes: int = _DEFAULT_LOOKBACK,
    chunk_bytes: int = 4 * _MIB,
    timeout_seconds: float = 60.0,
    top_topics: int = 5,
) -> CommitLogTail:
    """Read the commit log on `host` from a little before `from_offset` (to see a message
    straddling it) up to `to_offset` (None: until the written log ends, i.e. a chunk of zeros or
    the last file's end), at most `max_bytes` from `from_offset` on, and count its messages.

    Files are listed with `ls -1` (20-digit names: their start offsets) and read in chunks with
    `xxd -p -s N -l M` (or `od -A n -v -t x1 -j N -N M` where xxd is missing), argv only.
    Raises CommitLogError when the directory cannot be listed or a file cannot be read."""
    if from_offset < 0 or (to_offset is not None and to_offset < 0):
        raise CommitLogError(f"invalid offsets: from {from_offset}, to {to_offset}")
    if max_bytes <= 0 or lookback_bytes < 0 or chunk_bytes <= 0:
        raise CommitLogError(
            f"invalid limits: max_bytes {max_bytes}, lookback_bytes {lookback_bytes}, "
            f"chunk_bytes {chunk_bytes}"
        )
    files: dict[int, str] = {}
    for directory in (d for d in commitlog_dir.split(_MULTI_PATH_SPLITTER) if d):
        for start, path in (await _list_files(host, directory, timeout_seconds)).items():
            if start in files:
                raise CommitLogError(f"{host.name}: two commit log files start at {start}")
            files[start] = path
    starts = sorted(files)
    if not starts:
        tail = count_messages(b"", from_offset, from_offset, top_topics=top_topics)
        return replace(tail, straddles=None, note=f"no commit log files in {commitlog_dir}")
    try:
        use_xxd = await host.has_command("xxd")
    except HostError as exc:
        raise CommitLogError(str(exc)) from None

    index = max((i for i, s in enumerate(starts) if s <= from_offset), default=0)
    read_start = max(starts[index], from_offset - lookback_bytes)
    limit = max(from_offset, read_start) + max_bytes
    stop_at = limit if to_offset is None else min(to_offset, limit)
    chunks: list[bytes] = []
    pos = read_start
    note = ""
    reached_end = False  # the log's end (EOF of the last file, or zeros) was seen
    while pos < stop_at and not reached_end:
        file_start = starts[index]
        next_start = starts[index + 1] if index + 1 < len(starts) else None
        file_stop = stop_at if next_start is None else min(stop_at, next_start)
        count = min(chunk_bytes, file_stop - pos)
        got = await _read_range(
            host,
            files[file_start],
            pos - file_start,
            count,
            use_xxd=use_xxd,
            timeout=timeout_seconds,
        )
        chunks.append(got)
        pos += len(got)
        # Zeros: past what was ever written, unless they are a BLANK's padding before the next
        # file (which is created empty in advance: zeros at its start too).
        zeros = to_offset is None and bool(got) and _NON_ZERO.search(got) is None
        if zeros and (
            next_start is None
            or not await _has_data_at(
                host, files[next_start], use_xxd=use_xxd, timeout=timeout_seconds
            )
        ):
            reached_end = True
            continue
        if len(got) < count:  # this file ends here
            if next_start is None:
                reached_end = True
            elif pos != next_start:
                note = f"{files[file_start]} ends at {pos}, the next file starts at {next_start}"
                break
            else:
                index += 1
        elif next_start is not None and pos >= next_start:
            index += 1
    data = b"".join(chunks)
    tail = count_messages(
        data, read_start, from_offset, top_topics=top_topics, at_boundary=read_start in files
    )
    capped = pos >= limit and (to_offset is None or to_offset > limit) and not reached_end
    if capped:
        note = f"stopped after max_bytes={max_bytes} at offset {pos}"
    return replace(tail, partial=capped or bool(note), note=note)
