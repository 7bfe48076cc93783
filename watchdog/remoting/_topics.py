"""Topic administration on one broker: UPDATE_AND_CREATE_TOPIC and the topic-name rules."""

# Checked against the 4.9.7 jars (javap of CreateTopicRequestHeader, AdminBrokerProcessor and
# TopicValidator):
# - header fields topic, defaultTopic, readQueueNums, writeQueueNums, perm, topicFilterType and
#   order are @CFNotNull (a missing one is code 1 "the custom field <x> is null");
#   topicSysFlag is optional; topicFilterType must name a TopicFilterType (SINGLE_TAG).
# - a SLAVE answers code 1 "Can't modify topic or subscription group from slave broker, ...".
# - a name is checked against ^[%|a-zA-Z0-9_-]+$ and at most 127 characters (code 1 otherwise);
#   the system topics (TBW102, SCHEDULE_TOPIC_XXXX, rmq_sys_*, ...) are refused.
# - creating a topic that exists overwrites its config and succeeds: the call is idempotent.
# - on success the broker re-registers with every nameserver at once (registerIncrementBrokerData),
#   so routes show the topic within a moment, on this broker group only.

from __future__ import annotations

import re

from ._admin import RequestCode, Requester, invoke

__all__ = ["DEFAULT_TOPIC", "TOPIC_MAX_LENGTH", "check_topic_name", "create_topic", "group_topic"]

DEFAULT_TOPIC = "TBW102"
TOPIC_MAX_LENGTH = 127
_TOPIC_CHARS = re.compile(r"[%|a-zA-Z0-9_-]+")
# % and | are legal too, but the failover plan has always replaced them: the canary topic a
# running config uses must not change under it.
_NOT_IN_GROUP_TOPIC = re.compile(r"[^A-Za-z0-9_-]")


def check_topic_name(topic: str) -> str:
    """Return ``topic`` if a 4.9.x broker accepts it as a name; ValueError says why not."""
    if not topic:
        raise ValueError("topic name is empty")
    if not _TOPIC_CHARS.fullmatch(topic):
        raise ValueError(f"topic {topic!r} may contain only letters, digits and %|_-")
    if len(topic) > TOPIC_MAX_LENGTH:
        raise ValueError(f"topic {topic[:20]!r}... is longer than {TOPIC_MAX_LENGTH} characters")
    return topic


def group_topic(prefix: str, broker_name: str) -> str:
    """The topic one feature (``prefix``: the canary, the drill) keeps per broker group:
    ``{prefix}_{broker_name}``, every character other than letters, digits, _ and - replaced
    by _, cut to 127 characters; a legal name for any prefix and broker name."""
    return _NOT_IN_GROUP_TOPIC.sub("_", f"{prefix}_{broker_name}")[:TOPIC_MAX_LENGTH]


async def create_topic(
    client: Requester,
    topic: str,
    *,
    read_queue_nums: int = 1,
    write_queue_nums: int = 1,
    perm: int = 6,
    timeout_seconds: float,
) -> None:
    """Create (or overwrite) ``topic`` on the broker ``client`` talks to.

    Raises ValueError for a bad name or queue count before sending anything, and RemoteError
    when the broker refuses (a slave, an illegal or system topic, ACL).
    """
    check_topic_name(topic)
    queue_nums = (("read_queue_nums", read_queue_nums), ("write_queue_nums", write_queue_nums))
    for name, value in queue_nums:
        if not 1 <= value <= 1024:
            raise ValueError(f"{name} must be between 1 and 1024, got {value}")
    if not 0 <= perm <= 15:
        raise ValueError(f"perm must be a 4-bit permission mask (6 = read-write), got {perm}")
    await invoke(
        client,
        RequestCode.UPDATE_AND_CREATE_TOPIC,
        {
            "topic": topic,
            "defaultTopic": DEFAULT_TOPIC,
            "readQueueNums": str(read_queue_nums),
            "writeQueueNums": str(write_queue_nums),
            "perm": str(perm),
            "topicFilterType": "SINGLE_TAG",
            "topicSysFlag": "0",
            "order": "false",
        },
        timeout_seconds=timeout_seconds,
    )
