"""fastjson dialect reader: bare integer keys in real 4.9.7 bodies, strings untouched, garbage."""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watchdog.remoting import ProtocolError
from watchdog.remoting._fastjson import dumps, loads, quote_bare_int_keys

GOLDEN = Path(__file__).parent / "golden"


def body_of(name: str) -> bytes:
    frame = (GOLDEN / name).read_bytes()
    (mark,) = struct.unpack(">i", frame[4:8])
    return frame[8 + (mark & 0xFFFFFF) :]


def test_real_cluster_info_body_with_bare_keys() -> None:
    body = body_of("ns_106_cluster_info.bin")
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)  # the reason this module exists
    doc = loads(body)
    assert doc["brokerAddrTable"]["broker-a"]["brokerAddrs"] == {
        "0": "127.0.0.1:21911",
        "1": "127.0.0.1:21921",
    }
    assert doc["clusterAddrTable"] == {"WdCluster": ["broker-a"]}


def test_fastjson_and_standard_route_bodies_parse_to_the_same_document() -> None:
    fastjson_form = body_of("ns_105_route_v317_fastjson.bin")
    standard_form = body_of("ns_105_route_standard.bin")
    assert b"{0:" in fastjson_form and b'{"0":' in standard_form
    assert loads(fastjson_form) == loads(standard_form) == json.loads(standard_form)


def test_fact_sheet_issue_3369_body() -> None:
    body = (
        '{"brokerAddrTable":{"broker_37_master":{"brokerAddrs":{0:"172.16.16.37:10911"},'
        '"brokerName":"broker_37_master","cluster":"37_cluster"}},'
        '"clusterAddrTable":{"37_cluster":["broker_37_master"]}}'
    )
    doc = loads(body)
    assert doc["brokerAddrTable"]["broker_37_master"]["brokerAddrs"] == {"0": "172.16.16.37:10911"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{0:"a",1:"b"}', {"0": "a", "1": "b"}),
        ('{ 0 : "a" , -3 :"b"}', {"0": "a", "-3": "b"}),
        ('{"k":{12:{34:[1,2,{5:6}]}}}', {"k": {"12": {"34": [1, 2, {"5": 6}]}}}),
        ('{\n\t7\n:\n"x"}', {"7": "x"}),
        ("[{1:2},3,4]", [{"1": 2}, 3, 4]),
        ('{"a":"{0:\\"x\\",1:2}"}', {"a": '{0:"x",1:2}'}),  # bare-key lookalike inside a string
        ('{"a\\\\":"b,1:c"}', {"a\\": "b,1:c"}),  # escaped backslash ends right before a quote
        ('{"a":1,"b":[1,2]}', {"a": 1, "b": [1, 2]}),  # plain JSON untouched
        ('"x,1:y"', "x,1:y"),
        ("123", 123),
        ('{"big":9007199254740993}', {"big": 9007199254740993}),  # longs stay exact
    ],
)
def test_loads(text: str, expected: Any) -> None:
    assert loads(text) == expected


def test_standard_json_skips_the_quoting_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    import watchdog.remoting._fastjson as fastjson

    calls: list[str] = []

    def counting(text: str) -> str:
        calls.append(text)
        return quote_bare_int_keys(text)

    monkeypatch.setattr(fastjson, "quote_bare_int_keys", counting)
    assert loads('{"table":{"commitLogMaxOffset":"42","0":"x"}}') == {
        "table": {"commitLogMaxOffset": "42", "0": "x"}
    }
    assert calls == []
    # A body with bare keys still goes through the pass and parses.
    assert loads('{"brokerAddrs":{0:"a:1",1:"b:2"}}') == {"brokerAddrs": {"0": "a:1", "1": "b:2"}}
    assert len(calls) == 1
    with pytest.raises(ProtocolError, match="malformed"):
        loads('{"a":1,}')
    assert len(calls) == 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.integers(-9, 99), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_loads_reads_both_dialects_as_the_quoting_pass_alone_does(value: Any) -> None:
    for text in (dumps(value), json.dumps(value)):  # fastjson form (bare int keys), standard
        assert loads(text) == json.loads(quote_bare_int_keys(text), strict=False)


def test_strings_are_never_rewritten() -> None:
    text = '{"addr":"{0:1}","v":",2:3"}'
    assert quote_bare_int_keys(text) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "malformed JSON body"),
        ('{0:"a"', "malformed JSON body"),
        ('{"a":1}}', "malformed JSON body"),
        ("[1:2]", "malformed JSON body"),
        ("{abc:1}", "malformed JSON body"),
        (b"\xff\xfe", "not UTF-8"),
        ('{{"brokerName":"b","queueId":0,"topic":"t"}:{"x":1}}', "object or array as a map key"),
        ("[" * 100_000, "nested too deeply|malformed"),
        ('{"n":' + "1" * 5000 + "}", "malformed JSON body"),  # over Python's int-digit limit
    ],
)
def test_malformed_input_raises_protocol_error(text: str | bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        loads(text)


def test_protocol_error_is_the_only_error_for_non_text() -> None:
    with pytest.raises(TypeError):
        loads(123)  # type: ignore[arg-type]


# --- generated documents ------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
# Include keys full of JSON punctuation so the pre-pass must really track strings.
str_keys = st.text(alphabet=st.sampled_from('ab{}[],:"\\ 0123'), max_size=8)
documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.integers(-(2**63), 2**63 - 1), children, max_size=4)
        | st.dictionaries(str_keys, children, max_size=4)
    ),
    max_leaves=25,
)


def normalized(value: Any) -> Any:
    """What loads() returns for ``value``: every map key a string."""
    if isinstance(value, dict):
        return {str(k): normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    return value


@given(documents)
def test_bare_int_key_documents_round_trip(doc: Any) -> None:
    text = dumps(doc)
    assert loads(text) == normalized(doc)
    assert loads(text.encode("utf-8")) == normalized(doc)


@given(st.dictionaries(st.integers(0, 2**40), st.text(max_size=30), min_size=1, max_size=6))
def test_broker_addrs_shape_is_written_bare_and_read_back(addrs: dict[int, str]) -> None:
    text = dumps({"brokerAddrs": addrs})
    first = next(iter(addrs))
    assert text.startswith(f'{{"brokerAddrs":{{{first}:')  # written bare, as fastjson does
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert loads(text) == {"brokerAddrs": {str(k): v for k, v in addrs.items()}}


@given(documents)
def test_standard_json_is_read_exactly_like_json_loads(doc: Any) -> None:
    text = json.dumps(normalized(doc))
    assert loads(text) == json.loads(text)


@given(st.text(max_size=200))
def test_arbitrary_text_never_raises_anything_but_protocol_error(text: str) -> None:
    with contextlib.suppress(ProtocolError):
        loads(text)


@given(documents, st.integers(0, 500), st.text(alphabet='{}[],:"\\0123 ', max_size=3))
def test_corrupted_documents_never_raise_anything_but_protocol_error(
    doc: Any, position: int, patch: str
) -> None:
    text = dumps(doc)
    position %= len(text) + 1
    with contextlib.suppress(ProtocolError):
        loads(text[:position] + patch + text[position + len(patch) :])


def test_dumps_rejects_unsupported_keys() -> None:
    with pytest.raises(TypeError, match="neither str nor int"):
        dumps({(1, 2): "x"})
