"""Read and surgically edit Java .properties files: change a value, keep every other byte."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["PropertiesFile", "unified_diff"]

# key, then optional blanks, one of '=' ':' or blanks, then the value (java.util.Properties rules).
_LOGICAL = re.compile(
    r"^(?P<lead>[ \t\f]*)(?P<key>(?:\\.|[^=:\s\\])+)(?P<sep>[ \t\f]*[=:]?[ \t\f]*)"
)


@dataclass(frozen=True)
class _Entry:
    key: str
    first_line: int  # index into lines
    last_line: int  # last physical line of this logical line (continuations)
    value: str


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _escape_value(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == " " and i == 0:
            out.append("\\ ")
        else:
            out.append(ch)
    return "".join(out)


def _ends_with_continuation(line: str) -> bool:
    stripped = line.rstrip("\r\n")
    backslashes = len(stripped) - len(stripped.rstrip("\\"))
    return backslashes % 2 == 1


@dataclass(frozen=True)
class PropertiesFile:
    """The text of a properties file as lines (with their line endings), plus its parsed entries."""

    lines: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> PropertiesFile:
        return cls(tuple(text.splitlines(keepends=True)))

    def render(self) -> str:
        return "".join(self.lines)

    def _entries(self) -> list[_Entry]:
        entries: list[_Entry] = []
        i = 0
        while i < len(self.lines):
            start = i
            line = self.lines[i]
            body = line.lstrip(" \t\f")
            if not body.strip() or body[0] in "#!":
                i += 1
                continue
            logical = line.rstrip("\r\n")
            while _ends_with_continuation(self.lines[i]) and i + 1 < len(self.lines):
                logical = logical[:-1] + self.lines[i + 1].rstrip("\r\n").lstrip(" \t\f")
                i += 1
            match = _LOGICAL.match(logical)
            if match is not None:
                value = logical[match.end() :]
                entries.append(_Entry(_unescape(match.group("key")), start, i, _unescape(value)))
            i += 1
        return entries

    def get(self, key: str) -> str | None:
        """The value Java would read: the last definition wins."""
        found = None
        for entry in self._entries():
            if entry.key == key:
                found = entry.value
        return found

    def as_dict(self) -> dict[str, str]:
        return {e.key: e.value for e in self._entries()}

    def with_values(self, values: Mapping[str, str]) -> PropertiesFile:
        """Set keys; an existing key's last definition is edited in place, a new key is appended.

        Everything else (comments, order, blank lines, separators, line endings) stays unchanged.
        """
        lines = list(self.lines)
        entries = self._entries()
        newline = "\n"
        for line in lines:
            if line.endswith("\r\n"):
                newline = "\r\n"
                break
        appended: list[str] = []
        # Replace from the bottom up so earlier line indexes stay valid.
        edits: list[tuple[_Entry, str]] = []
        for key, value in values.items():
            last = None
            for entry in entries:
                if entry.key == key:
                    last = entry
            if last is None:
                appended.append(f"{key}={_escape_value(value)}{newline}")
            else:
                edits.append((last, value))
        for entry, value in sorted(edits, key=lambda e: e[0].first_line, reverse=True):
            first = lines[entry.first_line]
            match = _LOGICAL.match(first.rstrip("\r\n"))
            assert match is not None  # the entry was parsed from this very line
            ending = lines[entry.last_line][len(lines[entry.last_line].rstrip("\r\n")) :]
            lines[entry.first_line : entry.last_line + 1] = [
                first[: match.end()] + _escape_value(value) + (ending or newline)
            ]
        if appended and lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += newline
        return PropertiesFile(tuple(lines + appended))


def unified_diff(old: str, new: str, path: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{path} (now)",
            tofile=f"{path} (after)",
        )
    )
