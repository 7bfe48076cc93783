"""Pure choice of a promotion's path: in place through the candidate's plug-in, or by restart."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..config import WatchdogConfig
from ..remoting import PluginInfo

__all__ = ["PluginAnswer", "in_place_path"]


@dataclass(frozen=True)
class PluginAnswer:
    """What a broker answered to PLUGIN_INFO when the plan was made (act asks it, so the plan
    stays pure): its plug-in's info, or None and why."""

    info: PluginInfo | None
    # Why there is no info: "" when the broker answered REQUEST_CODE_NOT_SUPPORTED (no
    # plug-in), else the error of the request (timeout, connection refused, a garbled reply).
    error: str = ""

    def why_not(self, key: str, epoch: int) -> str | None:
        """Why the plug-in cannot take a request of this epoch now; None when it can."""
        if self.info is None:
            if self.error:
                return f"{key} did not answer PLUGIN_INFO ({self.error})"
            return f"{key} has no plug-in (it answered REQUEST_CODE_NOT_SUPPORTED)"
        info = self.info
        where = f"{key}'s plug-in {info.plugin_version}"
        if not info.has_secret:
            return f"{where} has no secret loaded (its secret file is missing or too short)"
        if info.broker_role != "SLAVE":
            return f"{key} runs as {info.broker_role}, not SLAVE"
        if info.last_epoch >= epoch:
            return (
                f"{where} already served epoch {info.last_epoch}, not older than this "
                f"failover's epoch {epoch}: it would refuse (was the watchdog's state reset?)"
            )
        return None


def in_place_path(
    config: WatchdogConfig,
    candidate_key: str,
    plugins: Mapping[str, PluginAnswer] | None,
    epoch: int,
) -> tuple[bool, str]:
    """Whether the candidate is promoted in place (by its plug-in, no restart) or by the
    restart path, and the one sentence that says why."""
    if config.failover.promotion != "inplace":
        return False, "restart: promotion = restart"
    answer = (plugins or {}).get(candidate_key)
    if answer is None:
        return False, f"restart: promotion = inplace but {candidate_key}'s plug-in was not asked"
    why_not = answer.why_not(candidate_key, epoch)
    if why_not is not None:
        return False, f"restart: promotion = inplace but {why_not}"
    assert answer.info is not None
    return True, (
        f"in place: promotion = inplace and {candidate_key}'s plug-in "
        f"{answer.info.plugin_version} answers (secret loaded, SLAVE, last epoch "
        f"{answer.info.last_epoch})"
    )
