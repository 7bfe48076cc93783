"""Act: the only code that changes a cluster — plans run as journaled, idempotent steps."""

from ._canary import CanaryResult, ClientSource, run_canary
from ._epoch import epoch_file_text
from ._executor import Executor
from ._journal import Journal, JournalProgress
from ._prepare import (
    RecordedMaster,
    ask_plugins,
    new_failover_id,
    prepare_plan,
    read_group_files,
    recorded_masters,
    role_restores,
)
from ._run import CanaryRunner, FailoverResult, StepFailed, StepRecord
from ._state import GroupRecord, StateError, StateStore, WatchdogState
from ._switchover import prepare_switchover

__all__ = [
    "CanaryResult",
    "ClientSource",
    "run_canary",
    "CanaryRunner",
    "Executor",
    "FailoverResult",
    "GroupRecord",
    "Journal",
    "JournalProgress",
    "StateError",
    "StateStore",
    "StepFailed",
    "StepRecord",
    "WatchdogState",
    "epoch_file_text",
    "RecordedMaster",
    "ask_plugins",
    "new_failover_id",
    "prepare_plan",
    "read_group_files",
    "recorded_masters",
    "role_restores",
    "prepare_switchover",
]
