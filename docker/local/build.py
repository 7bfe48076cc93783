"""The images docker-compose.yml needs, built from what this machine reaches: no registry pull.

docker-compose.yml names apache/rocketmq:4.9.7 (pulled) and builds the watchdog on
python:3.11-slim (pulled). Where no registry can be reached, docker/local/compose.yml swaps in
images made here instead:

  rmq-watchdog-local/debian:bookworm-<digest>   a Debian bookworm root filesystem (debootstrap,
                                                minbase, with openjdk-17-jre-headless, python3
                                                and python3-venv from Debian), `docker import`ed
  rmq-watchdog-local/rocketmq:4.9.7             on it: RocketMQ 4.9.7's jars from Maven Central
                                                (the sandbox's cache, `make rocketmq`) laid out as
                                                apache/rocketmq lays them out (rocketmq.Dockerfile)
  rmq-watchdog-local/watchdog:dev               on it: a venv with the watchdog's wheel, built
                                                from this checkout, and its dependencies' wheels
                                                from PyPI, installed offline (watchdog.Dockerfile)

Two steps, so that the part that needs the network and root runs without an engine:

    python docker/local/build.py prepare   # root filesystem, wheels, jars, into the cache
    python docker/local/build.py images    # prepare, then the images into DOCKER_HOST's engine

Everything is cached by content under $RMQ_WATCHDOG_CACHE (~/.cache/rmq-watchdog)/docker-local:
the root filesystem's tar by its package list, the wheels by the watchdog's sources, and the
built images (`docker save`) by every file that went into them. `images` on an engine that has
them already (same content label) does nothing; on a fresh engine it loads the saved archive;
only new content builds. Each cached item is made under a ".partial" name and renamed once
complete, so an interrupted run redoes it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from watchdog.tools.debootstrap import (
    SUITE,
    DebootstrapError,
    debootstrap,
    locked,
    mounts_under,
    remove_tree,
    rootfs_digest,
)
from watchdog.tools.sandbox import SandboxError, cache_root, ensure_rocketmq

__all__ = ["IMAGES", "BuildError", "ensure_images", "prepare"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

# The JRE runs the brokers, python3 and its venv module the watchdog: one base for both images,
# so the engine stores it once.
PACKAGES = ("openjdk-17-jre-headless", "python3", "python3-venv")
# Bump to rebuild the cached root filesystem (what is done to it after debootstrap changed).
LAYOUT = "1"
ROCKETMQ_VERSION = "4.9.7"
ROCKETMQ_IMAGE = f"rmq-watchdog-local/rocketmq:{ROCKETMQ_VERSION}"
WATCHDOG_IMAGE = "rmq-watchdog-local/watchdog:dev"
IMAGES = (ROCKETMQ_IMAGE, WATCHDOG_IMAGE)
# The image label that names the content an image was built from.
CONTENT_LABEL = "org.rmq-watchdog.local-content"
# What the watchdog's wheel is built from (the published Dockerfile's context, .dockerignore).
WHEEL_SOURCES = ("pyproject.toml", "README.md", "watchdog")
DEBOOTSTRAP_TIMEOUT_SECONDS = 1200
DOCKER_TIMEOUT_SECONDS = 900


class BuildError(RuntimeError):
    """An image cannot be made here; the message says why."""


Say = Callable[[str], None]


def _say(line: str) -> None:
    print(f"docker-local: {line}", file=sys.stderr, flush=True)


def _store() -> Path:
    return cache_root() / "docker-local"


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One builder at a time per cached item (a second run on this machine waits)."""
    with locked(_store() / f".{name}.lock"):
        yield


def _run(argv: Sequence[str], what: str, *, timeout: float, **kwargs: object) -> str:
    try:
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what}: did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise BuildError(f"{what} failed (exit {done.returncode}):\n{tail}")
    return str(done.stdout)


def _digest_files(root: Path, paths: Sequence[str]) -> str:
    """sha256 over the names and contents of the files under `paths` (relative to `root`)."""
    digest = hashlib.sha256()
    for rel in paths:
        top = root / rel
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _swap_stale(prefix: str, *keep: Path, say: Say) -> None:
    """Remove what an older content left under the same prefix (only one is ever used)."""
    for stale in _store().glob(f"{prefix}-*"):
        if stale not in keep:
            say(f"removing the stale {stale.name}")
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


# --- the Debian root filesystem --------------------------------------------------------------


def base_digest() -> str:
    return rootfs_digest(LAYOUT, PACKAGES)


def ensure_base_tar(say: Say = _say) -> Path:
    """The root filesystem as a tar for `docker import`, made now with debootstrap if missing."""
    target = _store() / f"base-{base_digest()}.tar"
    with _locked("base"):
        if target.is_file():
            return target
        tree = target.with_suffix(".partial")
        log = target.with_suffix(".log")
        started = time.monotonic()
        debootstrap(tree, PACKAGES, log=log, timeout_seconds=DEBOOTSTRAP_TIMEOUT_SECONDS, say=say)
        # Downloaded packages and the package lists are of no use in an image.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (tree / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        # debootstrap leaves the build machine's names behind; the engine writes its own.
        for name in ("etc/hostname", "etc/resolv.conf"):
            (tree / name).unlink(missing_ok=True)
        if mounts_under(tree):
            raise BuildError(f"{tree} still has mounts: {mounts_under(tree)}")
        partial = target.with_name(target.name + ".partial")
        _run(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(tree), "-cf", str(partial),
             "--exclude=./proc/*", "--exclude=./sys/*", "--exclude=./dev/*", "."],
            "tar of the root filesystem",
            timeout=DOCKER_TIMEOUT_SECONDS,
        )  # fmt: skip
        partial.rename(target)
        remove_tree(tree)
        _swap_stale("base", target, log, say=say)
        say(f"root filesystem made in {time.monotonic() - started:.0f} s ({target.name})")
        return target


# --- the watchdog's wheel and its dependencies -----------------------------------------------


def ensure_wheels(say: Say = _say) -> Path:
    """A folder with the watchdog's wheel and every dependency's, for an offline install."""
    digest = _digest_files(REPO, WHEEL_SOURCES)[:12]
    target = _store() / f"wheels-{digest}"
    with _locked("wheels"):
        if (target / "COMPLETE").is_file():
            return target
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        started = time.monotonic()
        say(f"building the watchdog's wheel and fetching its dependencies into {target.name}")
        # Built from a copy: setuptools would leave build/ and *.egg-info in the checkout.
        with tempfile.TemporaryDirectory(prefix="rmqwd-wheel-src-") as src:
            for rel in WHEEL_SOURCES:
                if (REPO / rel).is_dir():
                    shutil.copytree(
                        REPO / rel, Path(src) / rel,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                    )  # fmt: skip
                else:
                    shutil.copy2(REPO / rel, Path(src) / rel)
            _run(
                [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                 "--wheel-dir", str(partial), src],
                "pip wheel",
                timeout=DOCKER_TIMEOUT_SECONDS,
            )  # fmt: skip
        names = sorted(p.name for p in partial.glob("*.whl"))
        if not any(n.startswith("rmq_watchdog-") for n in names):
            raise BuildError(f"pip wheel finished without the watchdog's wheel: {names}")
        (partial / "COMPLETE").write_text("\n".join(names) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        _swap_stale("wheels", target, say=say)
        say(f"{len(names)} wheels in {time.monotonic() - started:.0f} s")
        return target


# --- build contexts and images ---------------------------------------------------------------


def _stage_rocketmq(context: Path) -> None:
    """rocketmq.Dockerfile's context: the jars, and the bin/ and conf/ made for them here."""
    lib = ensure_rocketmq(ROCKETMQ_VERSION)
    shutil.copy2(HERE / "rocketmq.Dockerfile", context / "Dockerfile")
    (context / "lib").mkdir()
    for jar in sorted(lib.glob("*.jar")):
        shutil.copy2(jar, context / "lib" / jar.name)
    shutil.copytree(HERE / "rocketmq" / "bin", context / "bin")
    shutil.copytree(HERE / "rocketmq" / "conf", context / "conf")


def _stage_watchdog(context: Path, wheels: Path) -> None:
    shutil.copy2(HERE / "watchdog.Dockerfile", context / "Dockerfile")
    (context / "wheels").mkdir()
    for wheel in sorted(wheels.glob("*.whl")):
        shutil.copy2(wheel, context / "wheels" / wheel.name)


def prepare(say: Say = _say) -> tuple[Path, Path]:
    """Everything the images are built from that needs the network or root, no engine."""
    lib = ensure_rocketmq(ROCKETMQ_VERSION)
    base = ensure_base_tar(say)
    wheels = ensure_wheels(say)
    say(f"prepared: {base.name}, {wheels.name}, RocketMQ {ROCKETMQ_VERSION} jars in {lib}")
    return base, wheels


def _docker(*args: str, what: str, env: dict[str, str] | None = None) -> str:
    return _run(["docker", *args], what, timeout=DOCKER_TIMEOUT_SECONDS, env=env).strip()


def _content_of(image: str) -> str | None:
    done = subprocess.run(
        ["docker", "image", "inspect", "--format",
         f'{{{{ index .Config.Labels "{CONTENT_LABEL}" }}}}', image],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_images(say: Say = _say) -> str:
    """IMAGES in the engine DOCKER_HOST names (or the default socket); the content key."""
    base_tar, wheels = prepare(say)
    base_image = f"rmq-watchdog-local/debian:{SUITE}-{base_digest()}"
    with tempfile.TemporaryDirectory(prefix="rmqwd-docker-local-") as tmp:
        contexts = {ROCKETMQ_IMAGE: Path(tmp) / "rocketmq", WATCHDOG_IMAGE: Path(tmp) / "watchdog"}
        for context in contexts.values():
            context.mkdir()
        _stage_rocketmq(contexts[ROCKETMQ_IMAGE])
        _stage_watchdog(contexts[WATCHDOG_IMAGE], wheels)
        content = hashlib.sha256(base_image.encode())
        for image, context in contexts.items():
            content.update(f"{image}\0{_digest_files(context, ['.'])}\0".encode())
        key = content.hexdigest()[:16]
        if all(_content_of(image) == key for image in IMAGES):
            say(f"the engine has the images already ({key})")
            return key
        saved = _store() / f"images-{key}.tar"
        with _locked("images"):
            if saved.is_file():
                started = time.monotonic()
                _docker("load", "--input", str(saved), what=f"docker load of {saved.name}")
                say(f"loaded {', '.join(IMAGES)} from {saved.name} in "
                    f"{time.monotonic() - started:.0f} s")  # fmt: skip
                if all(_content_of(image) == key for image in IMAGES):
                    return key
                say(f"{saved.name} did not hold images of content {key}: building them")
            started = time.monotonic()
            if _content_of(base_image) is None:
                _docker(
                    "import", str(base_tar), base_image, what=f"docker import of {base_tar.name}"
                )
                say(f"imported {base_image} in {time.monotonic() - started:.0f} s")
            # The classic builder: it takes the imported base from the engine, never a registry.
            env = {**os.environ, "DOCKER_BUILDKIT": "0"}
            for image, context in contexts.items():
                step = time.monotonic()
                _docker(
                    "build", "--quiet", "--build-arg", f"BASE={base_image}",
                    "--label", f"{CONTENT_LABEL}={key}", "--tag", image, str(context),
                    what=f"docker build of {image}", env=env,
                )  # fmt: skip
                say(f"built {image} in {time.monotonic() - step:.0f} s")
            partial = saved.with_name(saved.name + ".partial")
            _docker("save", "--output", str(partial), *IMAGES, what="docker save")
            partial.rename(saved)
            _swap_stale("images", saved, say=say)
            say(f"images built and saved as {saved.name} in {time.monotonic() - started:.0f} s")
        return key


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="docker/local/build.py", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("step", choices=("prepare", "images"))
    args = parser.parse_args(argv)
    try:
        if args.step == "prepare":
            prepare()
        else:
            print(ensure_images())
    except (BuildError, DebootstrapError, SandboxError, OSError) as exc:
        _say(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
