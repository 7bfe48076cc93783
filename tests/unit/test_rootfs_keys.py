"""The debootstrap cache keys stay what the caches on CI machines were made under.

A changed key is not wrong, but it costs every machine a new debootstrap (minutes of CI time and
a download from Debian's mirror): the pins below make the change deliberate.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from tests.systemd import rootfs
from watchdog.tools.debootstrap import rootfs_digest

REPO = Path(__file__).resolve().parents[2]


def _docker_build() -> ModuleType:
    """docker/local/build.py is a script, not a package: load it by its path."""
    path = REPO / "docker" / "local" / "build.py"
    spec = importlib.util.spec_from_file_location("_docker_local_build", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docker_base_keeps_its_cache_key() -> None:
    build = _docker_build()
    assert build.base_digest() == "68410ee5bafb"


def test_the_systemd_test_root_keeps_its_cache_key() -> None:
    assert rootfs.rootfs_dir().name == "debian-bookworm-5c1018bb4614"


def test_the_key_changes_with_the_package_list_and_the_layout() -> None:
    base = rootfs_digest("1", ("dbus", "systemd"))
    assert rootfs_digest("1", ("systemd", "dbus")) == base  # order does not matter
    assert rootfs_digest("1", ("dbus", "systemd", "sudo")) != base
    assert rootfs_digest("2", ("dbus", "systemd")) != base
