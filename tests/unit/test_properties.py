"""The properties editor changes the values it is asked to and not one other byte."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from watchdog.model import PropertiesFile, unified_diff

SEED = """# written by an operator
namesrvAddr=127.0.0.1:9876;127.0.0.1:9877
brokerClusterName=XdclassCluster
brokerName=broker-a
brokerId=1
deleteWhen=04
fileReservedTime=48
brokerRole=SLAVE
flushDiskType=ASYNC_FLUSH
"""


def test_reads_values() -> None:
    p = PropertiesFile.parse(SEED)
    assert p.get("brokerId") == "1"
    assert p.get("brokerRole") == "SLAVE"
    assert p.get("namesrvAddr") == "127.0.0.1:9876;127.0.0.1:9877"
    assert p.get("absent") is None


def test_edit_changes_only_the_two_lines() -> None:
    new = PropertiesFile.parse(SEED).with_values({"brokerId": "0", "brokerRole": "ASYNC_MASTER"})
    text = new.render()
    assert text == SEED.replace("brokerId=1", "brokerId=0").replace(
        "brokerRole=SLAVE", "brokerRole=ASYNC_MASTER"
    )
    diff = unified_diff(SEED, text, "broker-a-s.properties")
    changed = [
        line
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert changed == [
        "-brokerId=1",
        "+brokerId=0",
        "-brokerRole=SLAVE",
        "+brokerRole=ASYNC_MASTER",
    ]


def test_separators_spaces_crlf_and_comments_survive() -> None:
    text = "! bang comment\r\nbrokerId : 1\r\n\r\n  brokerRole   SLAVE\r\n# tail\r\n"
    new = PropertiesFile.parse(text).with_values({"brokerId": "0", "brokerRole": "SYNC_MASTER"})
    assert (
        new.render()
        == "! bang comment\r\nbrokerId : 0\r\n\r\n  brokerRole   SYNC_MASTER\r\n# tail\r\n"
    )


def test_last_definition_wins_and_is_the_one_edited() -> None:
    text = "brokerId=1\nbrokerId=2\n"
    p = PropertiesFile.parse(text)
    assert p.get("brokerId") == "2"
    assert p.with_values({"brokerId": "0"}).render() == "brokerId=1\nbrokerId=0\n"


def test_missing_key_is_appended_and_missing_final_newline_added() -> None:
    new = PropertiesFile.parse("a=1").with_values({"brokerRole": "SLAVE"})
    assert new.render() == "a=1\nbrokerRole=SLAVE\n"


def test_continuation_lines_are_one_entry() -> None:
    text = "namesrvAddr=127.0.0.1:9876;\\\n    127.0.0.1:9877\nbrokerId=1\n"
    p = PropertiesFile.parse(text)
    assert p.get("namesrvAddr") == "127.0.0.1:9876;127.0.0.1:9877"
    assert p.with_values({"brokerId": "3"}).render() == text.replace("brokerId=1", "brokerId=3")


_key = st.from_regex(r"[A-Za-z][A-Za-z0-9_.]{0,12}", fullmatch=True)
_value = st.from_regex(r"[A-Za-z0-9_.;:/-]{0,20}", fullmatch=True)
_line = st.one_of(
    st.builds(lambda k, v: f"{k}={v}\n", _key, _value),
    st.builds(lambda t: f"# {t}\n", _value),
    st.just("\n"),
)


@given(st.lists(_line, max_size=20), _key, _value)
def test_edit_touches_nothing_else(lines: list[str], key: str, value: str) -> None:
    text = "".join(lines)
    before = PropertiesFile.parse(text)
    after = before.with_values({key: value})
    assert after.get(key) == value
    for other, old_value in before.as_dict().items():
        if other != key:
            assert after.get(other) == old_value
    old_lines = text.splitlines(keepends=True)
    new_lines = after.render().splitlines(keepends=True)
    differing = [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=False)) if a != b]
    assert len(differing) <= 1
    assert len(new_lines) - len(old_lines) in (0, 1)
