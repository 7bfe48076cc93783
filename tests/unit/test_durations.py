from __future__ import annotations

import pytest

from watchdog.model import format_seconds, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("800ms", 0.8), ("3s", 3.0), ("1.5s", 1.5), ("2m", 120.0), ("1h", 3600.0), (" 5 s ", 5.0)],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["3", "", "s", "-1s", "3 days", "1e3s"])
def test_reject(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format() -> None:
    assert format_seconds(0.25) == "250 ms"
    assert format_seconds(3.21) == "3.2 s"
    assert format_seconds(600) == "10.0 min"


def test_just_under_a_second_is_said_in_seconds_not_as_1000_ms() -> None:
    from watchdog.model import format_seconds

    assert format_seconds(0.9996) == "1.0 s"
    assert format_seconds(0.9994) == "999 ms"
