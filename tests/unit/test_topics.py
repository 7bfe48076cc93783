"""One builder for the topics kept per broker group (the canary's, the drill's): the names the
three builders it replaced gave, pinned."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watchdog.decide import canary_topic
from watchdog.remoting import check_topic_name, group_topic
from watchdog.tools.drill import drill_topic


# The three builders as they were before they became one (commit 1c553a2): decide/_plan.py's
# canary_topic(prefix, name), canary.py's canary_topic(name) and drill.py's drill_topic(name).
def plan_before(prefix: str, broker_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{prefix}_{broker_name}")[:127]


def canary_before(broker_name: str) -> str:
    return check_topic_name("RMQ_WATCHDOG_CANARY_" + broker_name)


def drill_before(broker_name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in broker_name)
    return check_topic_name(("RMQ_WATCHDOG_DRILL_" + safe)[:127])


# What a broker group may be called in a config the canary and the drill both accepted.
names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-",
    min_size=1,
    max_size=107,  # RMQ_WATCHDOG_CANARY_ + 107 = 127
)


@pytest.mark.parametrize(
    ("prefix", "broker_name", "topic"),
    [
        ("RMQ_WATCHDOG_CANARY", "broker-a", "RMQ_WATCHDOG_CANARY_broker-a"),
        ("RMQ_WATCHDOG_DRILL", "broker-a", "RMQ_WATCHDOG_DRILL_broker-a"),
        ("RMQ_WATCHDOG_DRILL", "b.a", "RMQ_WATCHDOG_DRILL_b_a"),
        ("my.canary", "broker a", "my_canary_broker_a"),
        ("P", "grüße|%", "P_gr__e__"),
        ("RMQ_WATCHDOG_CANARY", "x" * 200, "RMQ_WATCHDOG_CANARY_" + "x" * 107),
    ],
)
def test_group_topics_keep_their_names(prefix: str, broker_name: str, topic: str) -> None:
    assert group_topic(prefix, broker_name) == topic
    assert check_topic_name(topic) == topic


@given(st.text(max_size=80), st.text(max_size=150))
def test_the_plans_canary_topic_is_unchanged_for_any_prefix_and_name(
    prefix: str, broker_name: str
) -> None:
    topic = canary_topic(prefix, broker_name)
    assert topic == plan_before(prefix, broker_name) == group_topic(prefix, broker_name)
    assert check_topic_name(topic) == topic


@given(names)
def test_the_canary_and_drill_topics_are_unchanged_for_legal_names(broker_name: str) -> None:
    assert group_topic("RMQ_WATCHDOG_CANARY", broker_name) == canary_before(broker_name)
    assert drill_topic(broker_name) == drill_before(broker_name)


@given(st.text(max_size=150))
def test_the_drill_topic_is_unchanged_wherever_it_had_one(broker_name: str) -> None:
    try:
        before = drill_before(broker_name)
    except ValueError:  # a letter outside ASCII: the old builder refused, the new one replaces
        assert check_topic_name(drill_topic(broker_name))
        return
    assert drill_topic(broker_name) == before
