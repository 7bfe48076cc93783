"""Ctrl-C in a command says what it left behind and exits 130, instead of a bare `Aborted!`."""

from __future__ import annotations

import pytest

from watchdog.commands._cli import run_async


async def _interrupted() -> int:
    raise KeyboardInterrupt


def test_ctrl_c_prints_what_was_left_and_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run_async(_interrupted, interrupted="the daemon finishes the failover by itself")
    assert info.value.code == 130
    assert capsys.readouterr().err == "interrupted: the daemon finishes the failover by itself\n"


def test_a_command_with_nothing_to_say_keeps_the_plain_interrupt() -> None:
    with pytest.raises(KeyboardInterrupt):
        run_async(_interrupted)
