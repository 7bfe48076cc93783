"""Act: the only code that changes a cluster — plans run as journaled, idempotent steps."""

from ._executor import (
    CanaryRunner,
    Executor,
    FailoverResult,
    StepFailed,
    StepRecord,
    epoch_file_text,
)
from ._failover import (
    follow_recorded_masters,
    manual_promote,
    new_failover_id,
    prepare_plan,
    read_group_files,
)
from ._journal import Journal, JournalProgress
from ._state import GroupRecord, StateError, StateStore, WatchdogState

__all__ = [
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
    "follow_recorded_masters",
    "manual_promote",
    "new_failover_id",
    "prepare_plan",
    "read_group_files",
]
