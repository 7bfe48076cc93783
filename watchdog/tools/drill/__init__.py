"""The fault drill: break a group's master under real traffic and report what clients saw."""

# _rules: what a drill may do (sandbox rule, faults, partition, refusals); _cluster: the group as
# the nameservers and brokers report it; _children: the client children's lines; _report: the
# report from observations alone (pure); _run: the phases. The librocketmq children themselves
# are `python -m watchdog.native produce|consume|audit`, with their lines' parsers.

from ...native import ReceiveRecord, SendRecord
from ._cluster import DRILL_TOPIC_PREFIX, drill_topic, judge_group, ready_master
from ._report import (
    DrillObservations,
    DrillReport,
    GroupJudgement,
    MessageAccounting,
    TimelineEvent,
    account_messages,
    build_report,
    consumer_caught_up_at,
    daemon_log_events,
    journal_events,
    promotion_of,
    render_report,
    write_outage,
)
from ._rules import (
    FAULTS,
    DrillOptions,
    DrillRefused,
    SandboxBroker,
    SandboxMatch,
    fault_argv,
    match_sandbox,
    partition_ruleset,
    sandbox_command,
)
from ._run import run_drill

__all__ = [
    # running a drill
    "DrillOptions",
    "DrillRefused",
    "FAULTS",
    "run_drill",
    # the sandbox rule and the faults
    "SandboxBroker",
    "SandboxMatch",
    "fault_argv",
    "match_sandbox",
    "partition_ruleset",
    "sandbox_command",
    # the group and its topic
    "DRILL_TOPIC_PREFIX",
    "drill_topic",
    "judge_group",
    "ready_master",
    # the report
    "ReceiveRecord",
    "SendRecord",
    "DrillObservations",
    "DrillReport",
    "GroupJudgement",
    "MessageAccounting",
    "TimelineEvent",
    "account_messages",
    "build_report",
    "consumer_caught_up_at",
    "daemon_log_events",
    "journal_events",
    "promotion_of",
    "render_report",
    "write_outage",
]
