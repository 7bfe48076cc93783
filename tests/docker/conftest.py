"""Tests that need a real Docker engine.

Where `docker info` answers, they run against that engine. Where none answers but Debian's
`dockerd` is installed and we are root (`make system-deps` installs docker.io), a private engine
is started for the session: its own socket, data and exec roots in a temporary folder, no
default bridge and no iptables rules, and its own network namespace (loopback up, nothing
else), so the networks its containers get (docker-compose.yml's `rmq` bridge) exist in that
namespace only and touch nothing of the machine's; overlay2 storage, vfs where overlay2 cannot
start. It is stopped when the session ends. Without either, nothing here is collected (rather
than skipped). The compose failover test is collected only with RMQWD_DOCKER_COMPOSE=1
(`make test-docker`, which prepares the images it runs: docker/local/build.py).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker_host_cases import DockerWorld


def _engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(
                ["docker", "info", "--format", "{{.ServerVersion}}"],
                capture_output=True,
                timeout=20,
                check=False,
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def _start_private_engine() -> bool:
    """Start a session-private dockerd and point DOCKER_HOST at it; False when impossible."""
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        return False
    failures = []
    for storage in ("overlay2", "vfs"):
        started, why = _try_private_engine(dockerd, storage)
        if started:
            return True
        failures.append(f"--storage-driver {storage}:\n{why}")
    raise RuntimeError(
        "dockerd is installed but a private engine did not start:\n" + "\n".join(failures)
    )


def _try_private_engine(dockerd: str, storage: str) -> tuple[bool, str]:
    root = Path(tempfile.mkdtemp(prefix="rmqwd-dockerd-"))
    sock = root / "docker.sock"
    log = (root / "dockerd.log").open("wb")
    argv = [
        dockerd, "--host", f"unix://{sock}", "--data-root", str(root / "data"),
        "--exec-root", str(root / "exec"), "--pidfile", str(root / "dockerd.pid"),
        "--storage-driver", storage, "--bridge", "none", "--iptables=false",
        "--ip6tables=false", "--ip-masq=false",
    ]  # fmt: skip
    # A network namespace of its own, which ends with the engine's last process; the unix
    # socket is a file, reached from here as from any namespace.
    proc = subprocess.Popen(
        ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()
        # Containers' mounts are gone with the engine's namespace; vfs layers may hold
        # read-only files; the folder is ours alone.
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    os.environ["DOCKER_HOST"] = f"unix://{sock}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if _engine_answers():
            return True, ""
        time.sleep(0.5)
    tail = (root / "dockerd.log").read_text(errors="replace")[-1500:]
    stop()
    del os.environ["DOCKER_HOST"]
    return False, tail


_HAS_ENGINE = _engine_answers() or _start_private_engine()
collect_ignore_glob = [] if _HAS_ENGINE else ["test_*.py"]
if _HAS_ENGINE and os.environ.get("RMQWD_DOCKER_COMPOSE") != "1":
    collect_ignore_glob.append("test_compose_failover.py")

# A small image with a POSIX sh, mv, kill, sleep, printf and touch; by default one imported
# from the machine's static busybox (Debian: busybox-static), since nothing may be pulled.
TEST_IMAGE = os.environ.get("RMQWD_DOCKER_TEST_IMAGE", "rmq-watchdog-busybox:test")


def engine_socket() -> str:
    """The unix socket the docker CLI uses, for the backend under test to use too."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        pytest.fail(f"DOCKER_HOST={host}: the docker host backend speaks to unix sockets only")
    return host.removeprefix("unix://")


def docker(*args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode().strip()


def _import_busybox_image(work: Path) -> None:
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not Path(busybox).is_file():
        pytest.fail("no busybox to build the test image from: apt-get install busybox-static")
    root = work / "rootfs"
    (root / "bin").mkdir(parents=True)
    for directory in ("tmp", "etc", "proc", "sys", "dev"):
        (root / directory).mkdir()
    shutil.copy2(busybox, root / "bin" / "busybox")
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True)
    docker("import", "-", TEST_IMAGE, stdin=tar.stdout)


@pytest.fixture(scope="session")
def test_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    images = subprocess.run(
        ["docker", "image", "inspect", TEST_IMAGE], capture_output=True, check=False
    )
    if images.returncode != 0:
        _import_busybox_image(tmp_path_factory.mktemp("image"))
    return TEST_IMAGE


@pytest.fixture
def docker_world(test_image: str, tmp_path: Path) -> Iterator[DockerWorld]:
    """A fresh container with no network, whose `files` directory is bind-mounted at the
    same path, so the test and the container see the same files under the same names."""
    files = tmp_path / "files"
    files.mkdir()
    name = f"rmqwd-test-{uuid.uuid4().hex[:10]}"
    docker(
        "create", "--name", name, "--network", "none", "-v", f"{files}:{files}",
        test_image, "sleep", "100000",
    )
    docker("start", name)

    def is_running() -> bool:
        return docker("inspect", "--format", "{{.State.Running}}", name) == "true"

    def set_running(running: bool) -> None:
        if running:
            docker("start", name)
        else:
            docker("stop", "--time", "1", name)

    try:
        yield DockerWorld(engine_socket(), name, files, is_running, set_running)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
