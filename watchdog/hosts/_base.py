"""What every host backend shares: the Host protocol, results, argv and path checks."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..model import WatchdogError

__all__ = [
    "HAS_COMMAND_SCRIPT",
    "NEW_FILE_MODE",
    "DRAIN_GRACE_SECONDS",
    "CommandResult",
    "Host",
    "HostError",
    "PidMarker",
    "check_argv",
    "check_path",
    "lost_access",
    "timed_out",
]

# After a timed-out command's process group is killed, how long to wait for its pipes to close
# before giving up on the rest of its output (something that left the group may hold them).
DRAIN_GRACE_SECONDS = 2.0

# New files get this mode; an existing file keeps its own.
NEW_FILE_MODE = 0o644


class HostError(WatchdogError):
    """A host could not be reached, or a file operation on it failed."""


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int | None  # None: killed after its timeout; negative: died of that signal
    stdout: str
    stderr: str

    @property
    def is_ok(self) -> bool:
        return self.exit_code == 0

    def summary(self) -> str:
        if self.exit_code is None:
            return "timed out"
        tail = (self.stderr or self.stdout).strip().splitlines()[-1:] or [""]
        return f"exit {self.exit_code}" + (f": {tail[0][:200]}" if tail[0] else "")


class Host(Protocol):
    name: str

    async def run(self, argv: Sequence[str], *, timeout_seconds: float) -> CommandResult:
        """Run argv (never through a shell's word splitting); on timeout kill it and all it
        started in its process group, and return exit_code None."""
        ...

    async def read_file(self, path: str) -> bytes: ...

    async def write_file(self, path: str, data: bytes) -> None:
        """Replace `path` atomically (temp file in the same directory, then rename), keeping
        the mode of the file it replaces."""
        ...

    async def has_command(self, name: str) -> bool:
        """Whether `name` is an executable file (on PATH unless it contains a slash); raises
        HostError when the host cannot be asked."""
        ...

    async def close(self) -> None: ...


def check_argv(argv: Sequence[str]) -> tuple[str, ...]:
    args = tuple(argv)
    if not args:
        raise ValueError("empty command: argv needs at least the program to run")
    for arg in args:
        if not isinstance(arg, str):
            raise TypeError(f"command argument {arg!r} is not a string")
        if "\0" in arg:
            raise ValueError(f"command argument {arg!r} contains a NUL byte")
    return args


def check_path(host_name: str, path: str) -> None:
    if not path or path.endswith("/") or "\0" in path:
        raise HostError(f"{host_name}: {path!r} is not a file path")


def timed_out(
    args: tuple[str, ...], timeout_seconds: float, out: bytes, err: bytes
) -> CommandResult:
    note = f"timed out after {timeout_seconds} s; killed its process group"
    stderr = err.decode(errors="replace")
    return CommandResult(
        args, None, out.decode(errors="replace"), f"{stderr}\n{note}" if stderr else note
    )



# `sh -c SCRIPT NAME` exits 0 when NAME is an executable file, like shutil.which locally (not a
# shell builtin or function), for backends that ask a remote shell.
HAS_COMMAND_SCRIPT = (
    'case "$0" in */*) p="$0";; *) p=$(command -v -- "$0") || exit 1;; esac; '
    'case "$p" in /*|*/*) test -f "$p" && test -x "$p";; *) exit 1;; esac'
)


@dataclass(frozen=True)
class PidMarker:
    """A `<prefix><pid>` line the wrapper shell prints on stderr before exec'ing the command.

    Backends that run a command through a remote or container shell learn the pid (or process
    group) that way, so a timed-out command can be killed; the line is removed from stderr.
    """

    prefix: str

    @property
    def _line(self) -> re.Pattern[bytes]:
        return re.compile(rb"(?m)^" + re.escape(self.prefix.encode()) + rb"(\d+)\n")

    def pid(self, err: bytearray) -> int | None:
        match = self._line.search(err)
        return int(match.group(1)) if match else None

    def strip(self, err: bytearray) -> bytes:
        return self._line.sub(b"", bytes(err), count=1)


def lost_access(path: str, mode: int, *, kept_owner: bool, kept_group: bool) -> str | None:
    """Why replacing `path` with a file we own would lock its owner out, or None.

    An atomic rewrite creates a new file: it belongs to the watchdog's user unless that user may
    give it back (root, or the same user). The broker that reads the file after a restart is
    usually its owner: when the owner cannot be kept, that owner must still read the file
    through its group (kept when the watchdog's user is a member) or through the others' bit.
    """
    if kept_owner:
        return None
    if (kept_group and mode & 0o040) or mode & 0o004:
        return None
    return (
        f"{path}: the watchdog's user cannot keep the file's owner, and mode {mode:04o} would "
        "leave that owner (the broker) no read access through the group or others; make the "
        "file group-readable by a group the watchdog's user is in (README: Installing under "
        "systemd)"
    )
