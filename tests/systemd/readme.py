"""The README's "Installing under systemd" section as data: its numbered steps and their blocks.

The install test runs these blocks as they are written, so the README cannot drift from what
was tested; this module only finds them.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

__all__ = ["README", "SECTION", "Block", "apt_packages", "install_blocks", "section_text"]

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Installing under systemd"

_STEP = re.compile(r"^(\d+)\. ")
_FENCE_OPEN = re.compile(r"^(\s*)```sh\s*$")
_FENCE_CLOSE = re.compile(r"^\s*```\s*$")
_APT_INSTALL = re.compile(r"^apt-get install ((?:[a-z0-9][a-z0-9.+-]*\s*)+)$")


@dataclass(frozen=True)
class Block:
    """One fenced ```sh block: the step it belongs to and its commands (dedented)."""

    step: int
    commands: str

    def first_line(self) -> str:
        return self.commands.splitlines()[0]


def section_text(readme: Path = README) -> str:
    """The section's text, from its heading to the next level-2 heading."""
    text = readme.read_text(encoding="utf-8")
    start = text.find(SECTION + "\n")
    if start < 0:
        raise ValueError(f"{readme} has no section {SECTION!r}")
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end >= 0 else len(text)]


def install_blocks(readme: Path = README) -> list[Block]:
    """Every ```sh block of the section, in order, with the number of the step it is in."""
    blocks: list[Block] = []
    step = 0
    lines = section_text(readme).splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        numbered = _STEP.match(line)
        if numbered:
            step = int(numbered.group(1))
        opened = _FENCE_OPEN.match(line)
        if opened:
            body: list[str] = []
            i += 1
            while i < len(lines) and not _FENCE_CLOSE.match(lines[i]):
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise ValueError(f"an unclosed ```sh block in step {step} of {SECTION!r}")
            commands = textwrap.dedent("\n".join(body)).strip("\n")
            if not commands.strip():
                raise ValueError(f"an empty ```sh block in step {step} of {SECTION!r}")
            blocks.append(Block(step, commands + "\n"))
        i += 1
    if not blocks:
        raise ValueError(f"no ```sh block in {SECTION!r}")
    return blocks


def apt_packages(readme: Path = README) -> tuple[str, ...]:
    """The Debian packages the section's `apt-get install` lines name, sorted."""
    found: set[str] = set()
    for block in install_blocks(readme):
        for line in block.commands.splitlines():
            match = _APT_INSTALL.match(line.strip())
            if match:
                found.update(match.group(1).split())
    return tuple(sorted(found))
