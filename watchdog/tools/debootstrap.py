"""A Debian root filesystem made with debootstrap: its cache key, the run, and safe removal.

Two callers cache one: docker/local/build.py (the base of the local docker images) and
tests/systemd/rootfs.py (the systemd-nspawn test root). Each does its own finishing touches and
keeps its own cache layout; what they share is here, so both key and build the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from ..model import WatchdogError

__all__ = [
    "DEBOOTSTRAP",
    "MIRROR",
    "SUITE",
    "DebootstrapError",
    "debootstrap",
    "locked",
    "mounts_under",
    "remove_tree",
    "rootfs_digest",
]

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP = "/usr/sbin/debootstrap"


class DebootstrapError(WatchdogError):
    """The root filesystem cannot be made (or removed) here; the message says why."""


def rootfs_digest(layout: str, packages: Iterable[str]) -> str:
    """12 hex digits naming a root filesystem by its `layout` version, suite, mirror, packages.

    The text hashed is the callers' cache key as it was before they shared this: changing it
    makes every cache (CI's too) debootstrap again.
    """
    key = f"{layout} {SUITE} {MIRROR} {' '.join(sorted(packages))}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One holder at a time per lock file (a second process on this machine waits).

    The debootstrap builders and the sandbox's RocketMQ download (sandbox/_runtime.py) use it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def mounts_under(directory: Path) -> list[str]:
    """Mount points at or below `directory` (debootstrap mounts /proc and /sys in its target)."""
    prefix = str(directory)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found


def remove_tree(directory: Path) -> None:
    """Remove a (half-made) root filesystem, unmounting first: never recurse into a /proc."""
    for point in sorted(mounts_under(directory), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
    if mounts_under(directory):
        raise DebootstrapError(
            f"cannot unmount {mounts_under(directory)}; remove {directory} by hand"
        )
    if directory.exists():
        shutil.rmtree(directory)


def debootstrap(
    tree: Path,
    packages: Sequence[str],
    *,
    log: Path,
    timeout_seconds: float,
    say: Callable[[str], None],
) -> None:
    """A minbase SUITE with `packages` into `tree` (made afresh), debootstrap's output in `log`.

    On failure or overrun the tree is removed and DebootstrapError carries the log's tail.
    """
    if os.geteuid() != 0:
        raise DebootstrapError("debootstrap needs root")
    if not os.access(DEBOOTSTRAP, os.X_OK):
        raise DebootstrapError(
            f"{DEBOOTSTRAP} not found: run `make system-deps` (Debian package debootstrap)"
        )
    remove_tree(tree)
    argv = [
        DEBOOTSTRAP, "--variant=minbase", f"--include={','.join(packages)}",
        SUITE, str(tree), MIRROR,
    ]  # fmt: skip
    say(f"making the Debian root filesystem ({' '.join(argv)}; log {log})")
    try:
        with log.open("w") as out:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                timeout=timeout_seconds, check=False,
            )  # fmt: skip
    except subprocess.TimeoutExpired:
        remove_tree(tree)
        raise DebootstrapError(
            f"debootstrap did not finish in {timeout_seconds:.0f} s; log {log}"
        ) from None
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        remove_tree(tree)
        raise DebootstrapError(f"debootstrap failed (exit {done.returncode}), log {log}:\n{tail}")
