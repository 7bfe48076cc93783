"""rmq-watchdog-ping: exit 0 only for an answered runtime info, 1 otherwise, 2 for bad usage."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

from watchdog.ping import main, ping
from watchdog.remoting.standin import StandinServer


def test_answered_is_alive_and_every_fault_is_not() -> None:
    async def run() -> dict[str, bool]:
        server = StandinServer()
        broker = server.add_broker("broker-a", 0)
        seen: dict[str, bool] = {}
        async with server:
            for mode in ("ok", "hang", "garbage", "nonsense", "close", "error"):
                await broker.set_fault(mode)
                seen[mode], _ = await ping(broker.addr, timeout_seconds=0.5)
            await server.stop()
        return seen

    assert asyncio.run(run()) == {
        "ok": True,
        "hang": False,
        "garbage": False,
        "nonsense": False,
        "close": False,
        "error": False,
    }


def test_a_listening_port_that_never_answers_is_not_alive() -> None:
    with socket.socket() as listener:  # TCP accepts (backlog), nothing answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        addr = f"127.0.0.1:{listener.getsockname()[1]}"
        assert main([addr, "--timeout", "300ms"]) == 1


def test_bad_usage_exits_2_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "watchdog.ping", "not-an-address"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "rmq-watchdog-ping: 'not-an-address' is not host:port"
    assert main(["127.0.0.1:1", "--timeout", "soon"]) == 2


def test_the_cli_ping_refuses_a_bad_address_in_one_line_with_exit_2() -> None:
    from click.testing import CliRunner

    from watchdog.commands._cli import cli

    result = CliRunner().invoke(cli, ["ping", "nohost"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == "Error: ADDR: address 'nohost' is not host:port"
