"""The JSON dialect fastjson 1.2.x writes for RocketMQ bodies: a tolerant reader, a small writer."""

# fastjson writes a Map whose keys are not Strings with bare keys: HashMap<Long,String> comes out
# as {0:"10.0.0.1:10911",1:"10.0.0.2:10911"} (ClusterInfo, TopicRouteData.brokerDatas). Python's
# json rejects that, so a string-aware pre-pass quotes every bare integer key first. Keys that
# are whole objects (fastjson's MessageQueue-keyed stats tables) are not supported and fail
# with a clear error instead of being guessed at.

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ._errors import ProtocolError

__all__ = ["loads", "dumps", "quote_bare_int_keys", "valid_unicode"]

# Either a complete JSON string (matched whole, so nothing inside it is ever touched) or a
# structural '{' / ',' followed by a bare integer and a ':', which can only be an object key.
# Outside strings every '{' and ',' is structural, and after '[' or inside an array a number
# followed by ':' is invalid JSON anyway, so quoting it cannot turn garbage into a document.
#
# A string the text never closes is matched to the end of the text (the text is garbage then
# anyway): were it left unmatched, the search would retry at every later quote and rescan the
# rest each time: quadratic in the body size (a 32 KB body of escaped quotes after one
# opening quote took 12 s of the event loop; 1 MB would take hours). The
# possessive quantifiers keep a failed key match from backtracking through long digit runs.
_STRING = r'("[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z))'
_BARE_KEY = re.compile(_STRING + r"|([{,]\s*+)(-?[0-9]++)(\s*+:)", re.DOTALL)
_OBJECT_KEY = re.compile(_STRING + r"|[{,]\s*+([{\[])", re.DOTALL)


def _no_constant(name: str) -> Any:
    # Python's json reads NaN, Infinity and -Infinity; they are not JSON and no RocketMQ body
    # has them. A ValueError makes the document malformed like any other syntax error.
    raise ValueError(f"{name} is not a JSON value")


# What json.loads(text, strict=False) builds anew on every call, minus the non-JSON constants.
_DECODER = json.JSONDecoder(strict=False, parse_constant=_no_constant)


def valid_unicode(text: str) -> bool:
    """False when ``text`` holds a lone surrogate, which a ``\\uD800`` escape can produce: no
    character at all, and a UnicodeEncodeError for whoever writes the string out later."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _lone_surrogate(value: Any) -> str | None:
    """The first string (key or value) in a parsed document that is not valid Unicode."""
    stack = [value]  # iterative: documents nest as deep as the decoder's recursion allows
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not valid_unicode(item):
                return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _quote(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return match.group(1)
    return f'{match.group(2)}"{match.group(3)}"{match.group(4)}'


def quote_bare_int_keys(text: str) -> str:
    """``text`` with fastjson's bare integer map keys quoted; strings are left untouched."""
    if ":" not in text:
        return text
    return _BARE_KEY.sub(_quote, text)


def loads(text: str | bytes) -> Any:
    """Parse standard JSON or fastjson's bare-integer-key dialect.

    ``{0:"a",1:"b"}`` parses as ``{"0": "a", "1": "b"}``: keys stay strings, as in any JSON
    object; the caller converts them. Raises ProtocolError on anything that is not a complete
    document in either form.
    """
    if isinstance(text, bytes | bytearray | memoryview):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"JSON body is not UTF-8: {exc}") from None
    if not isinstance(text, str):
        raise TypeError(f"loads() takes str or bytes, not {type(text).__name__}")
    try:
        # Most bodies (runtime info, KV tables) are standard JSON, and the quoting pass cannot
        # change a valid document (no '{' or ',' in one is followed by a bare number and ':'),
        # so parse first and pay for the regex only when that fails.
        try:
            value = _DECODER.decode(text)
        except ValueError:
            value = _DECODER.decode(quote_bare_int_keys(text))
    except RecursionError:
        raise ProtocolError("JSON body is nested too deeply") from None
    except ValueError as exc:
        if _has_object_key(text):
            raise ProtocolError(
                "JSON body uses an object or array as a map key (fastjson's dialect for "
                "MessageQueue-keyed tables), which this parser does not support"
            ) from None
        raise ProtocolError(f"malformed JSON body: {exc}") from None
    # Only a \u escape makes a surrogate: text decoded from UTF-8 never holds one.
    if "\\u" in text:
        bad = _lone_surrogate(value)
        if bad is not None:
            raise ProtocolError(f"JSON body has a string with a lone surrogate: {bad!r:.80}")
    return value


def _has_object_key(text: str) -> bool:
    return any(m.group(2) is not None for m in _OBJECT_KEY.finditer(text) if m.group(1) is None)


def dumps(value: Any) -> str:
    """Serialize like fastjson's defaults: compact, integer map keys written bare.

    Only what the stand-in server needs: dicts (str or int keys), lists/tuples, str, int,
    float, bool, None.
    """
    parts: list[str] = []
    _dump(value, parts)
    return "".join(parts)


def _dump(value: Any, out: list[str]) -> None:
    if isinstance(value, Mapping):
        out.append("{")
        first = True
        for key, item in value.items():
            if not first:
                out.append(",")
            first = False
            if isinstance(key, bool) or not isinstance(key, str | int):
                raise TypeError(f"map key {key!r} is neither str nor int")
            out.append(str(key) if isinstance(key, int) else json.dumps(key, ensure_ascii=False))
            out.append(":")
            _dump(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _dump(item, out)
        out.append("]")
    else:
        out.append(json.dumps(value, ensure_ascii=False))
