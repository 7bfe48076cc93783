"""RocketMQ 4.x remoting frames: the command value, frame encoding and an incremental decoder."""

# Frame layout (all integers big-endian):
#   int32 length         4 + headerLen + bodyLen; does not count itself
#   int32 headerLenMark  (serializeType << 24) | headerLen
#   header[headerLen]    JSON text (type 0) or the RocketMQ binary layout (type 1)
#   body[bodyLen]

from __future__ import annotations

import functools
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum
from types import MappingProxyType
from typing import Any

from ._errors import ProtocolError
from ._fastjson import valid_unicode

__all__ = [
    "SerializeType",
    "MAX_FRAME_BYTES",
    "LANGUAGE_CODES",
    "FLAG_RESPONSE",
    "FLAG_ONEWAY",
    "RemotingCommand",
    "encode_frame",
    "decode_header",
    "FrameDecoder",
]

# The Java server's decoder limit (LengthFieldBasedFrameDecoder maxFrameLength); it counts the
# 4-byte length prefix too, so the largest legal value of the length field is this minus 4.
MAX_FRAME_BYTES = 16 * 1024 * 1024

FLAG_RESPONSE = 1
FLAG_ONEWAY = 2

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_INT16_MIN, _INT16_MAX = -(2**15), 2**15 - 1
_MAX_HEADER_BYTES = 0xFFFFFF

# LanguageCode ordinals as the 4.9.7 enum declares them (the binary header carries the byte).
LANGUAGE_CODES: Mapping[str, int] = MappingProxyType(
    {
        "JAVA": 0,
        "CPP": 1,
        "DOTNET": 2,
        "PYTHON": 3,
        "DELPHI": 4,
        "ERLANG": 5,
        "RUBY": 6,
        "OTHER": 7,
        "HTTP": 8,
        "GO": 9,
        "PHP": 10,
        "OMS": 11,
        "RUST": 12,
    }
)
_LANGUAGE_NAMES = {v: k for k, v in LANGUAGE_CODES.items()}

_EMPTY: Mapping[str, str] = MappingProxyType({})

_PREFIX = struct.Struct(">ii")
_BIN_FIXED = struct.Struct(">hbhii")  # code, language, version, opaque, flag
_INT32 = struct.Struct(">i")
_INT16 = struct.Struct(">h")


class SerializeType(IntEnum):
    """How the header is written: the high byte of the header-length word."""

    JSON = 0
    ROCKETMQ = 1


@dataclass(frozen=True)
class RemotingCommand:
    """One request or response, header fields plus raw body.

    ``version`` is the sender's MQVersion ordinal; 407 is V4_9_7, and anything >= 401 makes a
    4.9.4+ nameserver answer GET_ROUTEINFO_BY_TOPIC in standard JSON.
    """

    code: int
    opaque: int = 0
    flag: int = 0
    language: str = "PYTHON"
    version: int = 407
    remark: str | None = None
    ext_fields: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)
    body: bytes = field(default=b"", hash=False)
    serialize_type: SerializeType = SerializeType.JSON

    @property
    def is_response(self) -> bool:
        return bool(self.flag & FLAG_RESPONSE)

    @property
    def is_oneway(self) -> bool:
        return bool(self.flag & FLAG_ONEWAY)


def _check_int(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def _json_header(cmd: RemotingCommand) -> bytes:
    # Keys in the order fastjson writes them (sorted); null fields are left out as Java does.
    obj: dict[str, Any] = {"code": cmd.code}
    if cmd.ext_fields:
        obj["extFields"] = {str(k): str(v) for k, v in cmd.ext_fields.items()}
    obj["flag"] = cmd.flag
    obj["language"] = cmd.language
    obj["opaque"] = cmd.opaque
    if cmd.remark is not None:
        obj["remark"] = cmd.remark
    obj["serializeTypeCurrentRPC"] = "JSON"
    obj["version"] = cmd.version
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


_OPAQUE_MARK = b'"opaque":0'
# Up to this many ext fields a header is written from a template: a probe's request signed for
# ACL carries AccessKey and Signature (and SecurityToken), the same ones every cycle.
_TEMPLATE_MAX_FIELDS = 3


@functools.lru_cache(maxsize=256, typed=True)  # typed: True and 1 write differently
def _json_header_around_opaque(
    code: int, flag: int, language: str, version: int, fields: tuple[tuple[str, str], ...] = ()
) -> tuple[bytes, bytes]:
    """The JSON header of a command without remark and with these few ext fields, split where
    its opaque goes.

    A probe cycle sends thousands of such requests that differ only in their opaque; writing
    the constant part once per request kind saves a json.dumps per request.
    """
    cmd = RemotingCommand(
        code=code, flag=flag, language=language, version=version, ext_fields=dict(fields)
    )
    header = _json_header(cmd)
    at = header.rindex(_OPAQUE_MARK)  # the last field before it is the (escaped) language
    return header[: at + len(_OPAQUE_MARK) - 1], header[at + len(_OPAQUE_MARK) :]


def _binary_header(cmd: RemotingCommand) -> bytes:
    language = LANGUAGE_CODES.get(cmd.language)
    if language is None:
        raise ValueError(f"language {cmd.language!r} has no RocketMQ language code")
    _check_int("code", cmd.code, _INT16_MIN, _INT16_MAX)
    _check_int("version", cmd.version, _INT16_MIN, _INT16_MAX)
    parts = [_BIN_FIXED.pack(cmd.code, language, cmd.version, cmd.opaque, cmd.flag)]
    if cmd.remark:
        remark = cmd.remark.encode("utf-8")
        parts += [_INT32.pack(len(remark)), remark]
    else:
        parts.append(_INT32.pack(0))
    ext = bytearray()
    for key, value in cmd.ext_fields.items():
        k, v = str(key).encode("utf-8"), str(value).encode("utf-8")
        if len(k) > _INT16_MAX:
            raise ValueError(f"ext field name of {len(k)} bytes does not fit the binary header")
        ext += _INT16.pack(len(k)) + k + _INT32.pack(len(v)) + v
    parts += [_INT32.pack(len(ext)), bytes(ext)]
    return b"".join(parts)


def encode_frame(cmd: RemotingCommand, *, opaque: int | None = None) -> bytes:
    """The complete frame for ``cmd``, length prefix included; ``opaque`` replaces cmd.opaque.

    Raises ValueError when the command cannot be framed (field out of range, frame too large).
    """
    if opaque is None:
        opaque = cmd.opaque
    _check_int("opaque", opaque, _INT32_MIN, _INT32_MAX)
    _check_int("flag", cmd.flag, _INT32_MIN, _INT32_MAX)
    _check_int("code", cmd.code, _INT32_MIN, _INT32_MAX)
    if cmd.serialize_type == SerializeType.ROCKETMQ:
        if opaque != cmd.opaque:
            cmd = replace(cmd, opaque=opaque)
        header = _binary_header(cmd)
    elif cmd.serialize_type == SerializeType.JSON:
        if cmd.remark is not None or len(cmd.ext_fields) > _TEMPLATE_MAX_FIELDS:
            header = _json_header(cmd if opaque == cmd.opaque else replace(cmd, opaque=opaque))
        else:
            head, tail = _json_header_around_opaque(
                cmd.code,
                cmd.flag,
                cmd.language,
                cmd.version,
                tuple(cmd.ext_fields.items()) if cmd.ext_fields else (),
            )
            header = b"".join((head, str(opaque).encode("ascii"), tail))
    else:  # pragma: no cover - IntEnum has only two members
        raise ValueError(f"unknown serialize type {cmd.serialize_type!r}")
    if len(header) > _MAX_HEADER_BYTES:
        raise ValueError(f"header of {len(header)} bytes exceeds the 24-bit header length")
    length = 4 + len(header) + len(cmd.body)
    if length + 4 > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {length + 4} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    mark = (int(cmd.serialize_type) << 24) | len(header)
    return b"".join((_PREFIX.pack(length, mark), header, cmd.body))


def _int_field(obj: dict[str, Any], name: str, default: int | None) -> int:
    value = obj.get(name, default)
    if value is None and default is not None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"JSON header field {name!r} is not an integer: {_short(value)}")
    # All four are Java ints; a bigger number is no RemotingCommand (and an opaque out of
    # range could not even be echoed in the answer to a server's request).
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise ProtocolError(f"JSON header field {name!r} is not a 32-bit integer: {value}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")  # NaN/Infinity: Python reads them, Java not


_HEADER_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _decode_json_header(header: bytes, body: bytes) -> RemotingCommand:
    try:
        text = header.decode("utf-8")
        obj = _HEADER_DECODER.decode(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"undecodable JSON header: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"JSON header is a {type(obj).__name__}, not an object")
    code = _int_field(obj, "code", None)
    language = obj.get("language") or "OTHER"
    remark = obj.get("remark")
    ext = obj.get("extFields") or {}
    if not isinstance(language, str):
        raise ProtocolError(f"JSON header field 'language' is not a string: {language!r}")
    if remark is not None and not isinstance(remark, str):
        raise ProtocolError(f"JSON header field 'remark' is not a string: {remark!r}")
    if not isinstance(ext, dict):
        raise ProtocolError(f"JSON header field 'extFields' is not an object: {ext!r}")
    fields: dict[str, str] = {}
    for key, value in ext.items():
        if value is None:
            continue  # Java leaves null header fields out; treat an explicit null the same way
        if isinstance(value, dict | list):
            raise ProtocolError(f"ext field {key!r} is not a scalar: {value!r}")
        fields[key] = value if isinstance(value, str) else json.dumps(value)
    # A \uD800 escape decodes to a lone surrogate: no character, and a UnicodeEncodeError for
    # whoever writes the string out later. Only an escape makes one, so most headers skip this.
    if "\\u" in text:
        for item in (language, remark, *fields, *fields.values()):
            if item is not None and not valid_unicode(item):
                raise ProtocolError(f"JSON header string with a lone surrogate: {item!r:.80}")
    return RemotingCommand(
        code=code,
        opaque=_int_field(obj, "opaque", 0),
        flag=_int_field(obj, "flag", 0),
        language=language,
        version=_int_field(obj, "version", 0),
        remark=remark,
        ext_fields=MappingProxyType(fields) if fields else _EMPTY,
        body=body,
        serialize_type=SerializeType.JSON,
    )


def _decode_binary_header(header: bytes, body: bytes) -> RemotingCommand:
    size = len(header)
    if size < _BIN_FIXED.size + 8:
        raise ProtocolError(f"binary header of {size} bytes is shorter than the fixed part")
    code, language, version, opaque, flag = _BIN_FIXED.unpack_from(header, 0)
    pos = _BIN_FIXED.size
    (remark_len,) = _INT32.unpack_from(header, pos)
    pos += 4
    if remark_len < 0 or pos + remark_len + 4 > size:
        raise ProtocolError(f"binary header remark length {remark_len} overruns the header")
    try:
        remark = header[pos : pos + remark_len].decode("utf-8") if remark_len else None
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"binary header remark is not UTF-8: {exc}") from None
    pos += remark_len
    (ext_len,) = _INT32.unpack_from(header, pos)
    pos += 4
    if ext_len < 0 or pos + ext_len != size:
        raise ProtocolError(
            f"binary header ext length {ext_len} does not match the {size - pos} bytes left"
        )
    fields: dict[str, str] = {}
    try:
        while pos < size:
            if pos + 2 > size:
                raise ProtocolError("binary header ext entry cut off in its key length")
            (key_len,) = _INT16.unpack_from(header, pos)
            pos += 2
            if key_len < 0 or pos + key_len + 4 > size:
                raise ProtocolError(f"binary header ext key length {key_len} overruns the header")
            key = header[pos : pos + key_len].decode("utf-8")
            pos += key_len
            (val_len,) = _INT32.unpack_from(header, pos)
            pos += 4
            if val_len < 0 or pos + val_len > size:
                raise ProtocolError(f"binary header ext value length {val_len} overruns the header")
            fields[key] = header[pos : pos + val_len].decode("utf-8")
            pos += val_len
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"binary header ext field is not UTF-8: {exc}") from None
    return RemotingCommand(
        code=code,
        opaque=opaque,
        flag=flag,
        language=_LANGUAGE_NAMES.get(language, "OTHER"),
        version=version,
        remark=remark,
        ext_fields=MappingProxyType(fields) if fields else _EMPTY,
        body=body,
        serialize_type=SerializeType.ROCKETMQ,
    )


def decode_header(serialize_type: int, header: bytes, body: bytes = b"") -> RemotingCommand:
    """Build a command from a header of the given serialize type; ProtocolError if it is garbage."""
    if serialize_type == SerializeType.JSON:
        return _decode_json_header(header, body)
    if serialize_type == SerializeType.ROCKETMQ:
        return _decode_binary_header(header, body)
    raise ProtocolError(f"unknown serialize type {serialize_type}")


class FrameDecoder:
    """Turns a byte stream into commands; feed it chunks of any size.

    Any garbage raises ProtocolError as soon as it can be recognised (a length prefix is judged
    before its frame arrives, so a bogus 2 GB length fails at once instead of waiting). After the
    first error the decoder stays failed: the stream has lost its framing and cannot resync.
    """

    __slots__ = ("_buf", "_failure", "_max_frame_bytes")

    def __init__(self, *, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._failure: ProtocolError | None = None
        self._max_frame_bytes = max_frame_bytes

    @property
    def is_failed(self) -> bool:
        return self._failure is not None

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[RemotingCommand]:
        if self._failure is not None:
            raise ProtocolError(f"decoder already failed: {self._failure}")
        try:
            return self._feed(chunk)
        except ProtocolError as exc:
            self._failure = exc
            self._buf = bytearray()
            raise

    def _feed(self, chunk: bytes) -> list[RemotingCommand]:
        buf = self._buf
        buf += chunk
        out: list[RemotingCommand] = []
        pos, end = 0, len(buf)
        while end - pos >= 4:
            (length,) = _INT32.unpack_from(buf, pos)
            if length < 4:
                raise ProtocolError(f"impossible frame length {length}")
            if length + 4 > self._max_frame_bytes:
                raise ProtocolError(
                    f"frame of {length + 4} bytes exceeds the {self._max_frame_bytes}-byte limit"
                )
            if end - pos < 8:
                break
            (mark,) = _INT32.unpack_from(buf, pos + 4)
            serialize_type = (mark >> 24) & 0xFF
            header_len = mark & 0xFFFFFF
            if serialize_type not in (SerializeType.JSON, SerializeType.ROCKETMQ):
                raise ProtocolError(f"unknown serialize type {serialize_type}")
            if header_len > length - 4:
                raise ProtocolError(
                    f"header length {header_len} is longer than the {length}-byte frame"
                )
            if end - pos < 4 + length:
                break
            header_start = pos + 8
            body_start = header_start + header_len
            frame_end = pos + 4 + length
            header = bytes(buf[header_start:body_start])
            body = bytes(buf[body_start:frame_end])
            out.append(decode_header(serialize_type, header, body))
            pos = frame_end
        if pos:
            del buf[:pos]
        return out
