"""The broker plug-in in a sandbox (`up --promotion inplace`): the built jar and the secrets."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from ._runtime import SandboxError

__all__ = [
    "PLUGIN_DIR",
    "PLUGIN_JAR_ENV",
    "PLUGIN_JAR_NAME",
    "PROMOTIONS",
    "BROKER_SECRET_NAME",
    "SANDBOX_SECRET_NAME",
    "Promotion",
    "new_secret",
    "plugin_jar",
    "write_private",
]

Promotion = Literal["restart", "inplace"]
PROMOTIONS: tuple[Promotion, ...] = ("restart", "inplace")
PLUGIN_JAR_NAME = "rmq-watchdog-broker-plugin.jar"
# Another build of the jar (e.g. an installed package without the repository's broker-plugin/).
PLUGIN_JAR_ENV = "RMQ_WATCHDOG_PLUGIN_JAR"
PLUGIN_DIR = "plugin"  # DIR/plugin/<jar>: on every broker's classpath
BROKER_SECRET_NAME = "watchdog-plugin.secret"  # in each broker's storePathRootDir
SANDBOX_SECRET_NAME = "plugin.secret"  # DIR/plugin.secret: the watchdog's copy

_REPO = Path(__file__).resolve().parents[3]


def plugin_jar() -> Path:
    """The built plug-in: $RMQ_WATCHDOG_PLUGIN_JAR, else the repository's
    broker-plugin/target/rmq-watchdog-broker-plugin.jar; SandboxError naming `make plugin`."""
    configured = os.environ.get(PLUGIN_JAR_ENV, "").strip()
    jar = Path(configured) if configured else _REPO / "broker-plugin" / "target" / PLUGIN_JAR_NAME
    if not jar.is_file():
        raise SandboxError(
            f"the broker plug-in is not built ({jar} does not exist): run `make plugin` "
            f"(or set ${PLUGIN_JAR_ENV} to its jar)"
        )
    return jar


def new_secret() -> str:
    """A fresh shared secret: 32 random bytes as 64 hex digits (the plug-in needs >= 16)."""
    return secrets.token_hex(32)


def write_private(path: Path, text: str) -> None:
    """Write `text` readable by its owner only (0600), also when the file already exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("ascii"))
    finally:
        os.close(fd)
