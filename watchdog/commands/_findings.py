"""What `check` reports: one finding (id, severity, subject, reason, fix), as a line or as JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Finding", "Severity", "byte_size", "can_fail_over", "findings_json", "plural"]

# ok: checked and fine; info: worth knowing, or something check could not measure (it says
# what); warn: the cluster runs against advice or a failover would degrade; error: needs
# attention (with blocks_failover: a failover could not run).
Severity = Literal["ok", "info", "warn", "error"]

_MARKS = {"ok": "ok  ", "info": "info", "warn": "WARN", "error": "FAIL"}


@dataclass(frozen=True)
class Finding:
    """`message` is the reason: what was measured and why it matters; `fix` what to change.
    `id` names what was found (`replication.async-master`), stable for scripts reading --json."""

    severity: Severity
    subject: str
    message: str
    blocks_failover: bool = False
    id: str = "check"
    fix: str = ""

    @property
    def reason(self) -> str:
        return self.message

    def render(self) -> str:
        line = f"[{_MARKS[self.severity]}] {self.subject}: {self.message}"
        return f"{line}\n       fix: {self.fix}" if self.fix else line

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity,
            "subject": self.subject,
            "reason": self.message,
            "fix": self.fix or None,
            "blocks_failover": self.blocks_failover,
        }


def can_fail_over(findings: Sequence[Finding]) -> bool:
    return not any(f.blocks_failover for f in findings)


def findings_json(findings: Sequence[Finding]) -> dict[str, Any]:
    """`check --json`: every finding, and the verdict the text form ends with."""
    return {
        "findings": [f.to_json() for f in findings],
        "can_fail_over": can_fail_over(findings),
        "problems": sum(f.severity == "error" for f in findings),
    }


def byte_size(n: float) -> str:
    """Bytes for a reason's text: "256 MiB", "23.5 GiB", "512 B"."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n:.0f} B"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
