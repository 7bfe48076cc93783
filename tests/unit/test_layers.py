"""The import contract: each part of `watchdog/` imports only its own layer or the ones below.

Top to bottom (README, "Architecture"):

    __main__                      `python -m watchdog`
    commands                      the click CLI and one-shot commands
    tools                         sandbox, drill: exercise a cluster; nothing below imports them
    daemon                        where the rooms meet
    act                           room 4, the only code that changes a cluster
    observe                       room 5: logs, metrics, sd_notify, webhooks, the status report
    decide                        room 3 (pure): decisions, operator rules, the plan
    detect | probe                room 2 (pure) | room 1 (I/O); neither imports the other
    native | hosts | ping | coord librocketmq children | the command/file seam | the light
                                  `rmq-watchdog-ping` secondary check | etcd (several
                                  instances, one leader); siblings
    remoting                      the wire
    config                        the TOML schema
    model                         shared values and rules (standard library only)

The pure rooms (model, detect, decide) import no I/O module at all. The checker is a plain
function over module sources, so the tests below also show it catching a violation.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "watchdog"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"__main__"}),
    frozenset({"commands"}),
    frozenset({"tools"}),
    frozenset({"daemon"}),
    frozenset({"act"}),
    frozenset({"observe"}),
    frozenset({"decide"}),
    frozenset({"detect", "probe"}),
    frozenset({"native", "hosts", "ping", "coord"}),
    frozenset({"remoting"}),
    frozenset({"config"}),
    frozenset({"model"}),
)
# The package root holds only __version__; every part may read it (metrics' build_info).
ROOT = "__init__"
PURE = frozenset({"model", "detect", "decide"})
IO_MODULES = frozenset(
    {
        "asyncio", "socket", "subprocess", "os", "time", "threading", "ctypes", "shutil",
        "tempfile", "fcntl", "select", "signal", "selectors", "httpx", "asyncssh", "pathlib",
        "structlog", "prometheus_client", "rocketmq", "random", "uuid", "grpc", "etcd3aio",
    }
)  # fmt: skip


def _rank(part: str) -> int:
    for rank, layer in enumerate(LAYERS):
        if part in layer:
            return rank
    raise KeyError(f"{part!r} is in no layer: add it to LAYERS (and the README)")


def _part_of(module: str) -> str:
    """`watchdog.act._executor` -> `act`; `watchdog` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _imports(module: str, source: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, absolute module) for every import in `source`, lazy ones included."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            yield node.lineno, target
            if node.module is None or target == "watchdog":
                # `from . import x` / `from watchdog import x`: x may be a subpackage
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}"


def violations(sources: Mapping[str, tuple[str, bool]]) -> list[str]:
    """Every import that breaks the contract; `sources` maps module -> (source, is_package)."""
    found = []
    known_parts = {_part_of(m) for m in sources}
    for module, (source, is_package) in sorted(sources.items()):
        part = _part_of(module)
        if part == ROOT:
            continue
        for line, target in _imports(module, source, is_package):
            top = target.split(".")[0]
            if part in PURE and top in IO_MODULES:
                found.append(f"{module}:{line} is pure but imports {target}")
            if top != "watchdog":
                continue
            other = _part_of(target)
            if other in (part, ROOT) or other not in known_parts:
                continue
            if _rank(other) < _rank(part):
                found.append(f"{module}:{line} imports {target}: {other} is above {part}")
            elif _rank(other) == _rank(part):
                found.append(f"{module}:{line} imports {target}: {other} and {part} are siblings")
    return found


def package_sources(root: Path = PACKAGE) -> dict[str, tuple[str, bool]]:
    sources = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).with_suffix("")
        is_package = rel.name == "__init__"
        module = ".".join(rel.parts[:-1] if is_package else rel.parts)
        sources[module] = (path.read_text(), is_package)
    return sources


def test_the_package_keeps_the_contract() -> None:
    assert violations(package_sources()) == []


def test_every_part_of_the_package_is_in_a_layer() -> None:
    for module in package_sources():
        part = _part_of(module)
        if part != ROOT:
            _rank(part)  # raises for a part nobody placed


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "watchdog.detect._detect",
            "from ..act import Executor\n",
            "watchdog.detect._detect:1 imports watchdog.act: act is above detect",
        ),
        (
            "watchdog.model._snapshot",
            "def f():\n    from watchdog.config import WatchdogConfig\n",
            "watchdog.model._snapshot:2 imports watchdog.config: config is above model",
        ),
        (
            "watchdog.probe._prober",
            "from ..detect import detect\n",
            "watchdog.probe._prober:1 imports watchdog.detect: detect and probe are siblings",
        ),
        (
            "watchdog.decide._plan",
            "import asyncio\n",
            "watchdog.decide._plan:1 is pure but imports asyncio",
        ),
        (
            "watchdog.act._executor",
            "from .. import tools\n",
            "watchdog.act._executor:1 imports watchdog.tools: tools is above act",
        ),
    ],
)
def test_the_checker_catches_a_lower_layer_importing_a_higher_one(
    module: str, source: str, expected: str
) -> None:
    sources = package_sources()
    sources[module] = (source, False)
    assert expected in violations(sources)


def test_no_import_cycle_between_top_level_parts() -> None:
    edges: dict[str, set[str]] = {}
    for module, (source, is_package) in package_sources().items():
        for _, target in _imports(module, source, is_package):
            if target.split(".")[0] == "watchdog" and _part_of(target) != _part_of(module):
                edges.setdefault(_part_of(module), set()).add(_part_of(target))

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(p for p in edges if reaches(p, p, {p}))
    assert cycles == []


def test_the_command_line_imports_no_room_until_a_command_needs_it() -> None:
    """A failover runs the sandbox's start/stop/kill commands (`python -m watchdog sandbox ...`)
    once per step: their start-up must not pay for act, daemon, probe and the rest."""
    code = (
        "import sys, watchdog.commands\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[:2] in ("
        "['watchdog', 'act'], ['watchdog', 'daemon'], ['watchdog', 'probe'], "
        "['watchdog', 'detect'], ['watchdog', 'decide'], ['watchdog', 'native']))\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == "[]", out


def test_only_coord_etcd_speaks_to_etcd() -> None:
    """coord/_etcd.py is the one module that imports the etcd client (or gRPC): the client can
    be swapped there alone, and no other part of the package talks to etcd."""
    speakers = sorted(
        f"{module}:{line}"
        for module, (source, is_package) in package_sources().items()
        for line, target in _imports(module, source, is_package)
        if target.split(".")[0] in ("etcd3aio", "grpc")
    )
    assert speakers and all(s.startswith("watchdog.coord._etcd:") for s in speakers), speakers


def test_coord_views_are_pure() -> None:
    """The values and the merge of instances' views are what detect will be fed: no I/O."""
    sources = package_sources()
    for module in ("watchdog.coord._values", "watchdog.coord._views"):
        source, is_package = sources[module]
        io = [t for _, t in _imports(module, source, is_package) if t.split(".")[0] in IO_MODULES]
        assert io == [], f"{module} imports {io}"
