"""Fixtures shared by unit and integration tests: a real sshd, and a directory nobody can write."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sshd import SshdServer, start_sshd


@pytest.fixture(scope="session")
def sshd_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """A real OpenSSH sshd on 127.0.0.1 that accepts `client_key` and is in `known_hosts`."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()


def _is_writable(directory: Path) -> bool:
    probe = directory / ".probe"
    try:
        probe.touch()
    except OSError:
        return False
    probe.unlink()
    return True


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory holding `old.properties` (b"old\\n", mode 0640) where no file can be created.

    Mode 0555 stops a normal user; root ignores modes, so it gets the immutable attribute too.
    The file itself stays writable in place, so only an atomic writer fails here.
    """
    directory = tmp_path / "locked"
    directory.mkdir()
    (directory / "old.properties").write_bytes(b"old\n")
    (directory / "old.properties").chmod(0o640)
    directory.chmod(0o555)
    immutable = False
    if _is_writable(directory):
        subprocess.run(["chattr", "+i", str(directory)], check=True, capture_output=True)
        immutable = True
    try:
        if _is_writable(directory):
            pytest.fail(f"cannot make {directory} unwritable (neither mode 0555 nor chattr +i)")
        yield directory
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(directory)], check=True, capture_output=True)
        with contextlib.suppress(OSError):
            os.chmod(directory, 0o755)
