"""Hypothesis strategies that feed the harnesses in fuzz/targets.py: well-formed inputs, the
same inputs mutated, and inputs built around the fields the parsers check.

Used by tests/unit/test_fuzz_short.py (a few thousand examples in ``make test``, hundreds of
thousands with FUZZ_EXAMPLES in ``make fuzz``).
"""

from __future__ import annotations

import json
import random
import re
import struct
from typing import Any

from hypothesis import strategies as st

from fuzz.targets import corpus_files
from watchdog.remoting import _fastjson
from watchdog.remoting._codec import (
    FLAG_RESPONSE,
    LANGUAGE_CODES,
    RemotingCommand,
    SerializeType,
    encode_frame,
)

__all__ = ["INPUTS", "mutate"]

# Integers where parsers draw lines: sign, int16/int32/int64 edges, 24-bit header length.
_EDGES = [0, 1, -1, 2**15 - 1, -(2**15), 2**15, 2**24 - 1, 2**24, 2**31 - 1, -(2**31), 2**31]
_EDGES += [2**32, 2**63 - 1, 2**63, -(2**63), 10**30]
edge_ints = st.one_of(st.sampled_from(_EDGES), st.integers(-(2**64), 2**64))
int32s = st.integers(-(2**31), 2**31 - 1)
# Text with the troublemakers: quotes, backslashes, braces, digits, non-ASCII, surrogates.
nasty_text = st.text(
    st.one_of(
        st.sampled_from('{}[],:"\\0123456789-+_ \t\n\u00e9\u0661\ud800\udfff'),
        st.characters(codec="utf-8"),
    ),
    max_size=24,
)
texts = st.text(st.characters(codec="utf-8"), max_size=24)


def _seeds(target: str) -> list[bytes]:
    return [p.read_bytes() for p in corpus_files(target)] or [b""]


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """``base`` with a few libFuzzer-style edits: flips, cuts, inserts, repeats, int swaps."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.integers(0, 5))
        pos = draw(st.integers(0, len(data))) if data else 0
        if op == 0 and data:
            data[min(pos, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:
            end = draw(st.integers(pos, len(data)))
            del data[pos:end]
        elif op == 2:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == 3 and data:
            end = draw(st.integers(pos, min(len(data), pos + 16)))
            data[pos:pos] = data[pos:end] * draw(st.integers(1, 4))
        elif op == 4 and len(data) >= 4:
            at = min(pos, len(data) - 4)
            data[at : at + 4] = struct.pack(">i", draw(st.sampled_from(_EDGES[:10])))
        elif op == 5:
            data[pos:pos] = str(draw(edge_ints)).encode()
    return bytes(data)


# --- frames ----------------------------------------------------------------------------------

ext_fields = st.dictionaries(texts, texts, max_size=4)


@st.composite
def commands(draw: st.DrawFn) -> RemotingCommand:
    binary = draw(st.booleans())
    small = st.integers(-(2**15), 2**15 - 1)
    return RemotingCommand(
        code=draw(small if binary else int32s),
        opaque=draw(int32s),
        flag=draw(st.sampled_from([0, FLAG_RESPONSE, 2, 3]) | int32s),
        language=draw(st.sampled_from(sorted(LANGUAGE_CODES))),
        version=draw(small if binary else int32s),
        remark=draw(st.none() | texts),
        ext_fields=draw(ext_fields),
        body=draw(st.binary(max_size=64)),
        serialize_type=SerializeType.ROCKETMQ if binary else SerializeType.JSON,
    )


def _json_scalar() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), edge_ints, st.floats(allow_nan=False), nasty_text)


@st.composite
def odd_json_headers(draw: st.DrawFn) -> bytes:
    """A JSON header whose fields have any type and any size; framed."""
    fields = ["code", "opaque", "flag", "version", "language", "remark", "extFields"]
    header: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(fields), unique=True)):
        if name == "extFields":
            header[name] = draw(
                st.dictionaries(nasty_text, _json_scalar() | st.lists(st.integers(), max_size=2))
                | _json_scalar()
            )
        else:
            header[name] = draw(_json_scalar())
    text = json.dumps(header, ensure_ascii=draw(st.booleans()))
    raw = text.encode("utf-8", "surrogatepass")
    body = draw(st.binary(max_size=16))
    return struct.pack(">ii", 4 + len(raw) + len(body), len(raw)) + raw + body


@st.composite
def odd_binary_headers(draw: st.DrawFn) -> bytes:
    """A binary header with lengths that may lie; framed."""
    parts = [struct.pack(">hbhii", *(draw(st.integers(-128, 127)) for _ in range(5)))]
    for _ in range(draw(st.integers(0, 3))):
        content = draw(st.binary(max_size=8))
        size = draw(st.sampled_from([len(content), len(content)]) | st.sampled_from(_EDGES[:6]))
        fmt = draw(st.sampled_from([">h", ">i"]))
        try:
            parts.append(struct.pack(fmt, size) + content)
        except struct.error:
            parts.append(struct.pack(fmt, 0))
    raw = b"".join(parts)
    return struct.pack(">ii", 4 + len(raw), (1 << 24) | len(raw)) + raw


def _framed(cmd: RemotingCommand) -> bytes:
    try:
        return encode_frame(cmd)
    except (ValueError, UnicodeEncodeError):
        return b""


frame_streams = st.lists(
    st.one_of(
        commands().map(_framed),
        odd_json_headers(),
        odd_binary_headers(),
        mutated(commands().map(_framed)),
        mutated(st.sampled_from(_seeds("replies"))),
        st.binary(max_size=32),
    ),
    min_size=1,
    max_size=3,
).map(b"".join)

chunked_streams = st.tuples(st.integers(0, 255), frame_streams).map(lambda t: bytes([t[0]]) + t[1])


# --- JSON bodies -----------------------------------------------------------------------------

json_values = st.recursive(
    _json_scalar(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(nasty_text | st.integers().map(str), inner, max_size=4)
    ),
    max_leaves=12,
)


def _fastjson_text(value: Any) -> bytes:
    """Written as fastjson would: integer-looking keys bare."""

    def rekey(v: Any) -> Any:
        if isinstance(v, dict):
            return {
                (int(k) if k.isascii() and k.lstrip("-").isdigit() else k): rekey(x)
                for k, x in v.items()
            }
        if isinstance(v, list):
            return [rekey(x) for x in v]
        return v

    try:
        return _fastjson.dumps(rekey(value)).encode("utf-8", "surrogatepass")
    except (ValueError, TypeError):
        return b"{}"


json_bodies = st.one_of(
    json_values.map(_fastjson_text),
    mutated(json_values.map(_fastjson_text)),
    mutated(st.sampled_from(_seeds("fastjson"))),
    st.text(st.sampled_from('{}[],:"\\0123-eE.ntrufalsNI \u00e9'), max_size=40).map(
        lambda s: s.encode("utf-8")
    ),
)

broker_addrs = st.dictionaries(
    st.sampled_from(["0", "1", "00", "-1", "+1", " 1", "1_0", "\u0661", "9" * 20]) | nasty_text,
    _json_scalar(),
    max_size=3,
)


@st.composite
def cluster_info_bodies(draw: st.DrawFn) -> bytes:
    names = st.sampled_from(["a", "b"]) | nasty_text
    table = {
        draw(names): {
            "brokerAddrs": draw(broker_addrs | _json_scalar()),
            "brokerName": draw(names),
            "cluster": draw(names | _json_scalar()),
        }
        for _ in range(draw(st.integers(0, 3)))
    }
    doc: dict[str, Any] = {"brokerAddrTable": draw(st.just(table) | _json_scalar())}
    if draw(st.booleans()):
        doc["clusterAddrTable"] = draw(
            st.dictionaries(names, st.lists(names | _json_scalar(), max_size=3)) | _json_scalar()
        )
    return _fastjson_text(doc)


@st.composite
def runtime_info_bodies(draw: st.DrawFn) -> bytes:
    offsets = st.sampled_from(["0", "123", "-5", " 7", "1_000", "+3", "\u0661", "9" * 20, ""])
    table = {
        "commitLogMaxOffset": draw(offsets | nasty_text | _json_scalar()),
        "commitLogMinOffset": draw(offsets),
        "bootTimestamp": draw(texts),
    }
    if draw(st.booleans()):
        del table["commitLogMinOffset"]
    return json.dumps({"table": table}).encode("utf-8", "surrogatepass")


@st.composite
def topic_route_bodies(draw: st.DrawFn) -> bytes:
    queue = {
        "brokerName": draw(st.sampled_from(["a"]) | _json_scalar()),
        "perm": draw(edge_ints | _json_scalar()),
        "readQueueNums": draw(edge_ints),
        "writeQueueNums": draw(edge_ints),
        draw(st.sampled_from(["topicSysFlag", "topicSynFlag"])): draw(edge_ints),
    }
    doc = {
        "brokerDatas": [{"brokerName": "a", "brokerAddrs": draw(broker_addrs)}],
        "queueDatas": [queue],
    }
    return _fastjson_text(doc)


def _reply(body: bytes, **ext: str) -> bytes:
    cmd = RemotingCommand(code=0, opaque=1, flag=FLAG_RESPONSE, ext_fields=ext, body=body)
    return _framed(cmd)


reply_frames = st.one_of(
    frame_streams,
    cluster_info_bodies().map(_reply),
    runtime_info_bodies().map(_reply),
    topic_route_bodies().map(_reply),
    st.builds(
        lambda name, value: _reply(b"", **{name: value}),
        st.sampled_from(["offset", "wipeTopicCount", "value"]),
        st.sampled_from(["0", "-1", " 2", "1_0", "\u0661", "9" * 30, "+4", "07"]) | texts,
    ),
    st.builds(
        lambda key, value: _reply(f"brokerId={key}\nbrokerRole={value}\n".encode()),
        st.sampled_from(["0", "1", "-1", " 1", "1_0", "\u0661", "x"]),
        texts.filter(lambda s: "\n" not in s),
    ),
)


# --- configs ---------------------------------------------------------------------------------

_CONFIG_VALUES = [
    '"1s"',
    '"0s"',
    '"800ms"',
    '"1e3s"',
    '"-1s"',
    '"\u0661s"',
    f'"{"9" * 400}s"',
    '"nan s"',
    "1",
    "-1",
    "0",
    "true",
    "[]",
    "{}",
    '""',
    '"x"',
    "9" * 30,
    "inf",
    "nan",
    "1.5",
    '"127.0.0.1:9876"',
    '"h:0"',
    '"h:\u0661"',
    '"h:99999"',
    "[" * 40 + "]" * 40,
    "[" * 1100 + "]" * 1100,  # deeper than the recursion limit
    "{a=" * 600 + "1" + "}" * 600,
    "9" * 4301,  # longer than Python's int() digit limit
    '"\\ud800"',
    '["a", 1]',
    "2024-01-01",
    '"a\\u0000b"',
]


_DURATION = re.compile(r'\s*"[0-9.]+(ms|s|m|h)"')
_DURATION_VALUES = [
    '"0ms"',
    '"1.5s"',
    '"2m"',
    '"1h"',
    '"1.s"',
    '".5s"',
    '"1e3s"',
    '"-1s"',
    '"1 s"',
    '"1sec"',
    '"\u0663s"',
    '"\uff13s"',
    '"' + "9" * 309 + 's"',
    '"' + "9" * 400 + 'ms"',
    '"0.' + "0" * 400 + '1s"',
]


@st.composite
def configs(draw: st.DrawFn) -> bytes:
    """A shipped config with a few values replaced by odd ones, or lines dropped or doubled."""
    lines = draw(st.sampled_from(_seeds("config"))).decode("utf-8").splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        settings = [n for n, text in enumerate(lines) if "=" in text and not text.startswith("#")]
        if draw(st.booleans()) and settings:  # half the edits change a value
            i, op = draw(st.sampled_from(settings)), 0
        else:
            i, op = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, 3))
        line = lines[i]
        if op == 0 and "=" in line:
            key, value = line.split("=", 1)
            if _DURATION.match(value) and draw(st.booleans()):
                value = draw(st.sampled_from(_DURATION_VALUES))  # durations have a grammar
            else:
                value = draw(st.sampled_from(_CONFIG_VALUES) | edge_ints.map(str))
            lines[i] = f"{key}= {value}"
        elif op == 1:
            del lines[i]
        elif op == 2:
            lines.insert(i, line)
        else:
            lines.insert(i, draw(st.sampled_from(["[probe]", "[[brokers]]", "[detect]", "x = 1"])))
    return "\n".join(lines).encode("utf-8")


config_inputs = st.one_of(configs(), mutated(st.sampled_from(_seeds("config"))))


INPUTS: dict[str, st.SearchStrategy[bytes]] = {
    "frame": chunked_streams,
    "header": st.one_of(
        st.tuples(st.integers(0, 2), json_bodies).map(lambda t: bytes([t[0]]) + t[1]),
        odd_json_headers().map(lambda f: b"\x00" + f[8:]),
        odd_binary_headers().map(lambda f: b"\x01" + f[8:]),
        mutated(st.sampled_from(_seeds("header"))),
    ),
    "client": chunked_streams,
    "fastjson": json_bodies,
    "cluster_info": st.one_of(cluster_info_bodies(), mutated(cluster_info_bodies()), json_bodies),
    "runtime_info": st.one_of(runtime_info_bodies(), mutated(runtime_info_bodies())),
    "topic_route": st.one_of(topic_route_bodies(), mutated(topic_route_bodies()), json_bodies),
    "replies": reply_frames,
    "config": config_inputs,
}


# --- fast mutants of a drawn input -----------------------------------------------------------

_INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b'"', b"\\", b"{", b"}", b"[", b":", b","]
_INTERESTING += [b"-", b"0", b"9", b"\\u", b"\xc3", b"\xed\xa0\x80", b"\n", b"="]
_INT_BYTES = [struct.pack(">i", v) for v in _EDGES[:10]] + [b"\x00\x00", b"\xff\xff"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One libFuzzer-style mutant of ``data`` (1-3 edits); cheap, so that each input hypothesis
    draws (milliseconds each) is followed by many mutants (microseconds each)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(9)
        pos = rng.randrange(len(out) + 1)
        if op == 0 and out:
            out[min(pos, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and out:
            out[min(pos, len(out) - 1)] = rng.randrange(256)
        elif op == 2:
            del out[pos : pos + rng.randint(1, 16)]
        elif op == 3:
            out[pos:pos] = rng.choice(_INTERESTING)
        elif op == 4:
            out[pos : pos + 4] = rng.choice(_INT_BYTES)
        elif op == 5:
            out[pos:pos] = str(rng.choice(_EDGES)).encode()
        elif op == 6 and out:
            start = rng.randrange(len(out))
            out[pos:pos] = out[start : start + rng.randint(1, 32)] * rng.randint(1, 3)
        elif op == 7:
            del out[pos:]
        else:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(out)
