"""RocketMQ jars from Maven Central (cached per version) and the java command lines to run them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from ...model import WatchdogError
from ..debootstrap import locked

__all__ = [
    "DEFAULT_VERSION",
    "JAVA_MODULE_OPTIONS",
    "Jvm",
    "SandboxError",
    "Tls",
    "cache_root",
    "check_heap",
    "ensure_rocketmq",
    "find_java",
    "java_argv",
    "rocketmq_major",
]

DEFAULT_VERSION = "4.9.7"

# RocketMQ 4.9.x reaches into JDK internals (direct buffers, cleaners); Java 17 refuses that
# unless the packages are opened. java.lang is for 5.x's controller (Hessian).
JAVA_MODULE_OPTIONS: tuple[str, ...] = (
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-exports=java.base/sun.nio.ch=ALL-UNNAMED",
)

_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:[-.][0-9A-Za-z]+)*$")
_HEAP = re.compile(r"^\d+[kKmMgG]$")
_MARKER = "COMPLETE"
_MAVEN_TIMEOUT_SECONDS = 900.0

Tls = Literal["permissive", "disabled"]


@dataclass(frozen=True)
class Jvm:
    """What the sandbox's JVMs run with: the jars of one RocketMQ version, heaps, TLS mode."""

    lib: Path
    version: str
    heap: str
    namesrv_heap: str
    tls: Tls
    # Jars on the brokers' classpath after lib/*: the broker plug-in with --promotion inplace.
    broker_jars: tuple[Path, ...] = ()


class SandboxError(WatchdogError):
    """Something the sandbox cannot do; the message says what and, where it can, why."""


def cache_root() -> Path:
    """$RMQ_WATCHDOG_CACHE, or ~/.cache/rmq-watchdog."""
    configured = os.environ.get("RMQ_WATCHDOG_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "rmq-watchdog"


def rocketmq_major(version: str) -> int:
    return int(version.split(".", 1)[0])


def _check_version(version: str) -> None:
    # The version becomes a directory name and a Maven property: refuse anything odd.
    if not _VERSION.match(version):
        raise SandboxError(f"invalid RocketMQ version {version!r}: expected e.g. 4.9.7 or 5.3.3")


def ensure_rocketmq(version: str = DEFAULT_VERSION) -> Path:
    """Return the lib directory holding RocketMQ `version`'s jars, fetching them if needed.

    The jars (namesrv, broker and their dependencies, rocketmq-tools among them) come from Maven
    Central through `mvn dependency:copy-dependencies` on the pom shipped with this package. A
    cache counts only once its marker file exists, so an interrupted download is redone.
    """
    _check_version(version)
    home = cache_root() / f"rocketmq-{version}"
    lib = home / "lib"
    marker = home / _MARKER
    if marker.is_file():
        return lib
    # Two processes fetching the same version into the same cache: one fetches, one waits.
    with locked(home.parent / f".rocketmq-{version}.lock"):
        if marker.is_file():  # another process finished while we waited for the lock
            return lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise SandboxError(
                "mvn (Apache Maven) is not on PATH; it is needed once to fetch RocketMQ "
                f"{version} from Maven Central (Debian: apt-get install maven)"
            )
        home.mkdir(parents=True, exist_ok=True)
        pom = home / "pom.xml"
        pom.write_bytes(
            resources.files("watchdog.tools.sandbox").joinpath("rocketmq-pom.xml").read_bytes()
        )
        partial = home / "lib.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(lib, ignore_errors=True)
        argv = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={partial}",
            f"-Drocketmq.version={version}",
        ]
        try:
            done = subprocess.run(
                argv,
                cwd=home,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_MAVEN_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            shutil.rmtree(partial, ignore_errors=True)
            raise SandboxError(
                f"Maven did not fetch RocketMQ {version} within {_MAVEN_TIMEOUT_SECONDS:.0f} s"
            ) from None
        if done.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            output = (done.stdout + done.stderr).strip().splitlines()
            tail = "\n".join(line for line in output[-15:] if line.strip())
            raise SandboxError(
                f"Maven could not fetch RocketMQ {version} (exit {done.returncode}):\n{tail}"
            )
        jars = sorted(p.name for p in partial.glob("*.jar"))
        for needed in (f"rocketmq-namesrv-{version}.jar", f"rocketmq-broker-{version}.jar"):
            if needed not in jars:
                shutil.rmtree(partial, ignore_errors=True)
                raise SandboxError(f"Maven finished but {needed} is not among the fetched jars")
        partial.rename(lib)
        marker.write_text(f"rocketmq {version}: {len(jars)} jars from Maven Central\n")
    return lib


def find_java() -> str:
    """$JAVA_HOME/bin/java if set, else `java` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise SandboxError(
            "java is not on PATH (and JAVA_HOME has no bin/java); RocketMQ needs Java 11 or newer "
            "(Debian: apt-get install openjdk-17-jre-headless)"
        )
    return found


def check_heap(heap: str) -> None:
    if not _HEAP.match(heap):
        raise SandboxError(f"invalid heap size {heap!r}: expected e.g. 128m or 1g")


def java_argv(
    main_class: str,
    lib_dir: Path,
    heap: str,
    extra: Sequence[str] = (),
    *,
    jvm_options: Sequence[str] = (),
    jars: Sequence[Path] = (),
) -> list[str]:
    """The argv that runs `main_class` from the jars in `lib_dir` with a `heap` such as "256m".

    `extra` are the main class's own arguments (e.g. `-c broker.properties`, or
    `clusterList -n 127.0.0.1:9876` for org.apache.rocketmq.tools.command.MQAdminStartup);
    `jvm_options` go before the class (e.g. `-Duser.home=...`); `jars` follow `lib_dir/*` on
    the classpath.
    """
    check_heap(heap)
    return [
        find_java(),
        *JAVA_MODULE_OPTIONS,
        f"-Xms{heap}",
        f"-Xmx{heap}",
        f"-XX:MaxDirectMemorySize={heap}",
        # No /tmp/hsperfdata_* files: jps is not needed, and parallel sandboxes share /tmp.
        "-XX:-UsePerfData",
        *jvm_options,
        "-cp",
        ":".join([f"{lib_dir}/*", *map(str, jars)]),
        main_class,
        *extra,
    ]
