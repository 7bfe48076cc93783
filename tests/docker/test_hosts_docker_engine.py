"""The docker host backend against a real Docker engine: the cases of tests/docker_host_cases.py
on a throwaway busybox container (see conftest.py), and what only a real engine shows."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from tests.docker.conftest import docker, engine_socket
from tests.docker_host_cases import *  # noqa: F403 - the shared cases run here on a real engine
from tests.docker_host_cases import DockerWorld

pytestmark = pytest.mark.integration


def test_a_new_file_belongs_to_the_user_only_the_image_knows(
    test_image: str, tmp_path: Path
) -> None:
    """apache/rocketmq runs as `rocketmq`, a name the engine's host does not know: a new file
    (the .epoch record, a .bak) gets the ids of the container's own /etc/passwd and /etc/group,
    on a running and on a stopped container. (Engine 20.10 refused copyUIDGID for such a user:
    'getent unable to find entry "rocketmq" in passwd database'.)"""
    files = tmp_path / "files"
    files.mkdir()
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0::/:/bin/sh\nrmqwd-only-here:x:3000:3001::/:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nrmqwd-only-here:x:3001:\nrmqwd-other:x:3002:\n")
    name = f"rmqwd-test-{uuid.uuid4().hex[:10]}"
    docker(
        "create", "--name", name, "--network", "none", "--user", "rmqwd-only-here",
        "-v", f"{files}:{files}", test_image, "sleep", "100000",
    )  # fmt: skip
    try:
        for database in ("passwd", "group"):
            docker("cp", str(etc / database), f"{name}:/etc/{database}")
        world = DockerWorld(engine_socket(), name, files, lambda: True, lambda _: None)
        docker("start", name)
        world.on(lambda h: h.write_file(str(files / "running.epoch"), b"epoch=1\n"))
        docker("stop", "--time", "1", name)
        world.on(lambda h: h.write_file(str(files / "stopped.epoch"), b"epoch=2\n"))
        for new, data in (("running.epoch", b"epoch=1\n"), ("stopped.epoch", b"epoch=2\n")):
            path = files / new
            assert path.read_bytes() == data
            assert (path.stat().st_uid, path.stat().st_gid) == (3000, 3001), new
        # user:group names the group too.
        docker("rm", name)
        docker(
            "create", "--name", name, "--network", "none", "--user", "rmqwd-only-here:rmqwd-other",
            "-v", f"{files}:{files}", test_image, "sleep", "100000",
        )  # fmt: skip
        for database in ("passwd", "group"):
            docker("cp", str(etc / database), f"{name}:/etc/{database}")
        world.on(lambda h: h.write_file(str(files / "grouped.epoch"), b"epoch=3\n"))
        grouped = (files / "grouped.epoch").stat()
        assert (grouped.st_uid, grouped.st_gid) == (3000, 3002)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
