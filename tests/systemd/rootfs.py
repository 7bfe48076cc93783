"""A Debian bookworm root filesystem for systemd-nspawn, made with debootstrap and cached.

It lives under the RocketMQ jars' cache ($RMQ_WATCHDOG_CACHE or ~/.cache/rmq-watchdog), in
systemd-rootfs/debian-bookworm-<digest>, where the digest covers the package list: systemd,
systemd-sysv and dbus (to boot), and whatever the README's `apt-get install` line names (the
install test runs that line too, and must find every package already there, offline). It is made
in a ".partial" directory and renamed once complete, with a marker file inside, so a run that
was interrupted is redone. Containers boot it with --volatile=overlay: it is never written to.

    python -m tests.systemd.rootfs      # make it now (`make systemd-rootfs`), print where it is
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.systemd.readme import apt_packages
from watchdog.tools.sandbox import cache_root

__all__ = ["BASE_PACKAGES", "HOSTNAME", "RootfsError", "ensure_rootfs", "rootfs_dir"]

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP = "/usr/sbin/debootstrap"
BASE_PACKAGES = ("dbus", "systemd", "systemd-sysv")
# The container's hostname (debootstrap leaves the build host's /etc/hostname behind).
HOSTNAME = "rmqwd-systemd"
MARKER = ".rmq-watchdog-rootfs-complete"
# Bump to rebuild every cached root filesystem (the customisation below changed).
LAYOUT = "1"
DEBOOTSTRAP_TIMEOUT_SECONDS = 900


class RootfsError(RuntimeError):
    """The root filesystem cannot be made here; the message says why."""


def _packages() -> tuple[str, ...]:
    return tuple(sorted({*BASE_PACKAGES, *apt_packages()}))


def rootfs_dir(packages: tuple[str, ...] | None = None) -> Path:
    packages = _packages() if packages is None else packages
    digest = hashlib.sha256(f"{LAYOUT} {SUITE} {MIRROR} {' '.join(packages)}".encode())
    return cache_root() / "systemd-rootfs" / f"debian-{SUITE}-{digest.hexdigest()[:12]}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time (another test run on this machine waits for this one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _mounts_under(directory: Path) -> list[str]:
    """Mount points at or below `directory` (debootstrap mounts /proc and /sys in its target)."""
    prefix = str(directory)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found


def _remove(directory: Path) -> None:
    """Remove a (half-made) tree, unmounting first: never recurse into a mounted /proc."""
    for point in sorted(_mounts_under(directory), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
    if _mounts_under(directory):
        raise RootfsError(f"cannot unmount {_mounts_under(directory)}; remove {directory} by hand")
    if directory.exists():
        shutil.rmtree(directory)


def _customise(root: Path) -> None:
    """The container's own identity; nothing the README's steps would do."""
    (root / "etc" / "hostname").write_text(HOSTNAME + "\n")
    (root / "etc" / "hosts").write_text(
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )


def ensure_rootfs(say: Callable[[str], None] = print) -> tuple[Path, bool]:
    """The cached root filesystem, made now if missing; (path, whether it was made now)."""
    packages = _packages()
    target = rootfs_dir(packages)
    with _locked(target.parent / ".lock"):
        if (target / MARKER).is_file():
            return target, False
        if os.geteuid() != 0:
            raise RootfsError("debootstrap and systemd-nspawn need root")
        if not os.access(DEBOOTSTRAP, os.X_OK):
            raise RootfsError(
                f"{DEBOOTSTRAP} not found: run `make system-deps` (Debian package debootstrap)"
            )
        _remove(target)  # a tree without its marker is half-made
        partial = target.with_name(target.name + ".partial")
        _remove(partial)
        log = target.with_name(target.name + ".log")
        argv = [
            DEBOOTSTRAP,
            "--variant=minbase",
            f"--include={','.join(packages)}",
            SUITE,
            str(partial),
            MIRROR,
        ]
        say(f"making the Debian root filesystem {target} ({' '.join(argv)}; log {log})")
        started = time.monotonic()
        try:
            with log.open("w") as out:
                result = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=DEBOOTSTRAP_TIMEOUT_SECONDS,
                    check=False,
                )
        except subprocess.TimeoutExpired:
            _remove(partial)
            raise RootfsError(
                f"debootstrap did not finish in {DEBOOTSTRAP_TIMEOUT_SECONDS} s; log {log}"
            ) from None
        if result.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            _remove(partial)
            raise RootfsError(f"debootstrap failed (exit {result.returncode}), log {log}:\n{tail}")
        _customise(partial)
        (partial / MARKER).write_text(" ".join(packages) + "\n")
        partial.rename(target)
        for stale in target.parent.glob(f"debian-{SUITE}-*"):
            if stale.is_dir() and stale != target:
                say(f"removing the stale root filesystem {stale}")
                _remove(stale)
        say(f"root filesystem made in {time.monotonic() - started:.0f} s")
        return target, True


def main() -> int:
    try:
        path, made = ensure_rootfs(lambda line: print(line, file=sys.stderr))
    except RootfsError as exc:
        print(f"systemd-rootfs: {exc}", file=sys.stderr)
        return 1
    print(f"{path}{'' if made else ' (cached)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
