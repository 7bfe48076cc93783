"""`check`'s advice on broker JVM memory: the host scan read back, the java command line's
heap and direct memory, and the findings against the machine's RAM; no I/O."""

# The commit log is read and written through the OS page cache (mmap), so a broker's heap is
# kept well under the machine's RAM: the seed sets -Xms528m -Xmx528m -Xmn256m in runbroker.sh,
# equal -Xms and -Xmx, and RocketMQ's own runbroker.sh caps direct memory
# (-XX:MaxDirectMemorySize), which otherwise defaults to the heap's maximum.

from __future__ import annotations

import contextlib
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ._findings import Finding, byte_size, plural

__all__ = [
    "HostScan",
    "JavaMemory",
    "JvmProcess",
    "broker_jvm_findings",
    "find_broker_process",
    "java_memory",
    "parse_host_scan",
    "parse_java_size",
]


@dataclass(frozen=True)
class JvmProcess:
    pid: int
    cwd: str  # empty when it could not be read
    argv: tuple[str, ...]


@dataclass(frozen=True)
class HostScan:
    """The BrokerStartup processes of one host and its memory (MemTotal of /proc/meminfo)."""

    host: str
    processes: tuple[JvmProcess, ...] = ()
    mem_total_bytes: int | None = None
    error: str | None = None  # the scan did not run or failed: nothing above was read


_SIZE = re.compile(r"([0-9]+)([kKmMgGtT]?)")
_SCALE = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# JVM options that take the next argument as their value (so it is not the main class).
_WITH_VALUE = frozenset(
    {
        "-cp", "-classpath", "--class-path", "-p", "--module-path", "--upgrade-module-path",
        "--add-modules", "--limit-modules", "--add-opens", "--add-exports", "--add-reads",
        "--patch-module",
    }
)  # fmt: skip


def parse_java_size(text: str) -> int | None:
    """A JVM size ("256m", "8g", "1048576") in bytes, or None."""
    match = _SIZE.fullmatch(text)
    if match is None:
        return None
    return int(match.group(1)) * _SCALE[match.group(2).lower()]


@dataclass(frozen=True)
class JavaMemory:
    """The memory options of a java command line (the last of each wins, as in the JVM)."""

    max_heap: int | None = None  # -Xmx / -XX:MaxHeapSize
    initial_heap: int | None = None  # -Xms / -XX:InitialHeapSize
    max_direct: int | None = None  # -XX:MaxDirectMemorySize
    max_ram_percentage: float | None = None  # -XX:MaxRAMPercentage


def java_memory(argv: Sequence[str]) -> JavaMemory:
    """The JVM options of `argv` (those before the main class) that size its memory."""
    max_heap = initial_heap = max_direct = None
    percentage = None
    skip = False
    for arg in argv[1:]:
        if skip:
            skip = False
            continue
        if arg in _WITH_VALUE:
            skip = True
            continue
        if not arg.startswith("-") or arg == "-jar":
            break  # the main class (or jar): what follows is the program's
        for prefix in ("-Xmx", "-XX:MaxHeapSize="):
            if arg.startswith(prefix):
                max_heap = parse_java_size(arg[len(prefix) :]) or max_heap
        for prefix in ("-Xms", "-XX:InitialHeapSize="):
            if arg.startswith(prefix):
                initial_heap = parse_java_size(arg[len(prefix) :]) or initial_heap
        if arg.startswith("-XX:MaxDirectMemorySize="):
            max_direct = parse_java_size(arg.partition("=")[2]) or max_direct
        if arg.startswith("-XX:MaxRAMPercentage="):
            with contextlib.suppress(ValueError):
                percentage = float(arg.partition("=")[2])
    return JavaMemory(max_heap, initial_heap, max_direct, percentage)


def _config_file(argv: Sequence[str]) -> str | None:
    """BrokerStartup's -c / --configFile argument (commons-cli forms)."""
    for i, arg in enumerate(argv):
        if arg in ("-c", "--configFile") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--configFile="):
            return arg.partition("=")[2]
        if arg.startswith("-c") and len(arg) > 2 and not arg.startswith("-cp"):
            return arg[2:]
    return None


def find_broker_process(processes: Sequence[JvmProcess], properties: str) -> JvmProcess | None:
    """The BrokerStartup process started with `-c properties` (a relative -c is read from the
    process's working directory)."""
    wanted = posixpath.normpath(properties)
    for proc in processes:
        given = _config_file(proc.argv)
        if given is None:
            continue
        if not posixpath.isabs(given):
            if not proc.cwd:
                continue
            given = posixpath.join(proc.cwd, given)
        if posixpath.normpath(given) == wanted:
            return proc
    return None


_SCAN_LINE = re.compile(r"(memtotal|pid|cwd|arg) ?(.*)")


def parse_host_scan(host: str, text: str) -> HostScan:
    """The output of check's host scan: `memtotal KB`, then per process `pid N`, `cwd DIR` and
    one `arg A` line per argument."""
    processes: list[JvmProcess] = []
    mem_total: int | None = None
    pid: int | None = None
    cwd = ""
    argv: list[str] = []

    def close() -> None:
        if pid is not None:
            processes.append(JvmProcess(pid, cwd, tuple(argv)))

    for line in text.splitlines():
        match = _SCAN_LINE.fullmatch(line)
        if match is None:
            continue
        kind, value = match.groups()
        if kind == "memtotal" and value.isdigit():
            mem_total = int(value) * 1024
        elif kind == "pid" and value.isdigit():
            close()
            pid, cwd, argv = int(value), "", []
        elif kind == "cwd":
            cwd = value
        elif kind == "arg" and pid is not None:
            argv.append(value)
    close()
    return HostScan(host, tuple(processes), mem_total)


def broker_jvm_findings(
    subject: str, host: str, properties: str, scan: HostScan | None
) -> list[Finding]:
    """A broker's heap and direct memory against its machine, from `scan` of its `host`; what
    could not be read is said (jvm.unreadable), never skipped."""
    if scan is None or scan.error is not None:
        why = scan.error if scan is not None else "not asked"
        return [
            Finding(
                "info",
                subject,
                f"JVM memory not checked: could not read processes on host {host} ({why})",
                id="jvm.unreadable",
            )
        ]
    proc = find_broker_process(scan.processes, properties)
    if proc is None:
        return [
            Finding(
                "info",
                subject,
                f"JVM memory not checked: no BrokerStartup process on host {host} was "
                f"started with -c {properties} "
                f"({plural(len(scan.processes), 'other BrokerStartup process')} there)",
                id="jvm.unreadable",
            )
        ]
    mem = java_memory(proc.argv)
    ram = scan.mem_total_bytes
    heap = mem.max_heap
    heap_note = ""
    if heap is None and ram is not None:
        share = (mem.max_ram_percentage or 25.0) / 100
        heap = int(ram * share)
        heap_note = f" (no -Xmx: {share * 100:g}% of RAM)"
    found: list[Finding] = []
    where = f"pid {proc.pid} on host {host}"
    runbroker = "JAVA_OPT in runbroker.sh (or the command that starts it)"
    if heap is not None and ram is not None and heap > ram / 2:
        found.append(
            Finding(
                "warn",
                subject,
                f"heap {byte_size(heap)}{heap_note} is more than half of the machine's "
                f"{byte_size(ram)} RAM ({where}): the commit log is read and written through the "
                "OS page cache, which then gets too little (slow reads from disk, "
                "'[PC_SYNCHRONIZED]broker busy' on writes)",
                id="jvm.heap-over-half-ram",
                fix=f"lower -Xms/-Xmx to at most {byte_size(ram / 2)} in {runbroker}",
            )
        )
    if mem.initial_heap is None or mem.max_heap is None or mem.initial_heap != mem.max_heap:
        if mem.initial_heap is None and mem.max_heap is None:
            sizes = "no -Xms or -Xmx: the JVM sizes the heap from RAM"
        else:
            xms = byte_size(mem.initial_heap) if mem.initial_heap is not None else "unset"
            xmx = byte_size(mem.max_heap) if mem.max_heap is not None else "unset"
            sizes = f"-Xms {xms} differs from -Xmx {xmx}"
        found.append(
            Finding(
                "warn",
                subject,
                f"{sizes} ({where}): the heap grows and shrinks under load, with full "
                "collections while it resizes",
                id="jvm.xms-not-xmx",
                fix=f"set -Xms equal to -Xmx in {runbroker} (the seed: -Xms528m -Xmx528m)",
            )
        )
    direct = mem.max_direct
    if direct is None:
        found.append(
            Finding(
                "warn",
                subject,
                f"no -XX:MaxDirectMemorySize ({where}): direct memory may then grow to the "
                "heap's size again, outside the heap's limit",
                id="jvm.direct-memory-unset",
                fix=f"set -XX:MaxDirectMemorySize in {runbroker} (RocketMQ's own runbroker.sh "
                "sets it), sized so heap + direct memory stay well within RAM",
            )
        )
    total = (heap or 0) + (direct if direct is not None else (heap or 0))
    if heap is not None and ram is not None and total > ram:
        found.append(
            Finding(
                "warn",
                subject,
                f"heap {byte_size(heap)} + direct memory "
                f"{byte_size(direct) if direct is not None else 'up to the heap size'} = "
                f"{byte_size(total)} exceeds the machine's {byte_size(ram)} RAM ({where}): the "
                "kernel kills the broker when both fill",
                id="jvm.memory-over-ram",
                fix=f"size -Xmx and -XX:MaxDirectMemorySize in {runbroker} to fit the machine",
            )
        )
    if ram is None:
        found.append(
            Finding(
                "info",
                subject,
                f"heap against RAM not checked: host {host} has no readable /proc/meminfo",
                id="jvm.unreadable",
            )
        )
    if not found:
        found.append(
            Finding(
                "ok",
                subject,
                f"heap {byte_size(heap or 0)} (-Xms = -Xmx), direct memory "
                f"{byte_size(direct or 0)}, RAM {byte_size(ram or 0)} ({where})",
                id="jvm.ok",
            )
        )
    return found
