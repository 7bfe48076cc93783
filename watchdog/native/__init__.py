"""Every use of librocketmq (ctypes, the `rocketmq` wheel), always in a child a parent can kill."""

# The parent side (run_canary_client, send_probe_messages, the drill's line children) starts
# `python -m watchdog.native VERB`; nothing the parent calls imports the client. The child side
# of each verb stays inside this package, behind __main__.

from ._canary import (
    CanaryOutputError,
    ClientOutcome,
    client_argv,
    parse_client_output,
    run_canary_client,
)
from ._pull import (
    PullBatch,
    PullResult,
    Queue,
    StoredMessage,
    fetch_queues,
    pull,
    pull_every_queue,
    start_pull_consumer,
)
from ._spawn import (
    ChildRun,
    describe_exit,
    int_field,
    json_object,
    last_event,
    number_field,
    reap,
    run_child,
    stderr_tail,
)
from ._traffic import (
    DRILL_CONSUMER_GROUP,
    DRILL_PRODUCER_GROUP,
    DRILL_SEND_INTERVAL_SECONDS,
    ProbeReport,
    ProbeSend,
    ReceiveRecord,
    SendRecord,
    message_body,
    parse_body,
    parse_probe_output,
    parse_receive_line,
    parse_send_line,
    send_probe_messages,
)

__all__ = [
    # the canary's child
    "CanaryOutputError",
    "ClientOutcome",
    "client_argv",
    "parse_client_output",
    "run_canary_client",
    # pulling
    "PullBatch",
    "PullResult",
    "Queue",
    "StoredMessage",
    "fetch_queues",
    "pull",
    "pull_every_queue",
    "start_pull_consumer",
    # child processes
    "ChildRun",
    "describe_exit",
    "int_field",
    "json_object",
    "last_event",
    "number_field",
    "reap",
    "run_child",
    "stderr_tail",
    # traffic
    "DRILL_CONSUMER_GROUP",
    "DRILL_PRODUCER_GROUP",
    "DRILL_SEND_INTERVAL_SECONDS",
    "ProbeReport",
    "ProbeSend",
    "ReceiveRecord",
    "SendRecord",
    "message_body",
    "parse_body",
    "parse_probe_output",
    "parse_receive_line",
    "parse_send_line",
    "send_probe_messages",
]
