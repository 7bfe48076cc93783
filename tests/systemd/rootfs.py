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

import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.systemd.readme import apt_packages
from watchdog.tools.debootstrap import (
    SUITE,
    DebootstrapError,
    debootstrap,
    locked,
    remove_tree,
    rootfs_digest,
)
from watchdog.tools.sandbox import cache_root

__all__ = ["BASE_PACKAGES", "HOSTNAME", "RootfsError", "ensure_rootfs", "rootfs_dir"]

BASE_PACKAGES = ("dbus", "systemd", "systemd-sysv")
# The container's hostname (debootstrap leaves the build host's /etc/hostname behind).
HOSTNAME = "rmqwd-systemd"
MARKER = ".rmq-watchdog-rootfs-complete"
# Bump to rebuild every cached root filesystem (the customisation below changed).
LAYOUT = "1"
DEBOOTSTRAP_TIMEOUT_SECONDS = 900


# The root filesystem cannot be made here; the message says why (tests/systemd/conftest.py
# catches it by this name).
RootfsError = DebootstrapError


def _packages() -> tuple[str, ...]:
    return tuple(sorted({*BASE_PACKAGES, *apt_packages()}))


def rootfs_dir(packages: tuple[str, ...] | None = None) -> Path:
    packages = _packages() if packages is None else packages
    digest = rootfs_digest(LAYOUT, packages)
    return cache_root() / "systemd-rootfs" / f"debian-{SUITE}-{digest}"


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
    with locked(target.parent / ".lock"):
        if (target / MARKER).is_file():
            return target, False
        remove_tree(target)  # a tree without its marker is half-made
        partial = target.with_name(target.name + ".partial")
        log = target.with_name(target.name + ".log")
        started = time.monotonic()
        debootstrap(
            partial, packages, log=log, timeout_seconds=DEBOOTSTRAP_TIMEOUT_SECONDS, say=say
        )
        _customise(partial)
        (partial / MARKER).write_text(" ".join(packages) + "\n")
        partial.rename(target)
        for stale in target.parent.glob(f"debian-{SUITE}-*"):
            if stale.is_dir() and stale != target:
                say(f"removing the stale root filesystem {stale}")
                remove_tree(stale)
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
