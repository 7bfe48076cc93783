"""The canary child's ACL account: on its stdin, never in its argv; given to librocketmq."""

from __future__ import annotations

import asyncio
import io
import json
import sys

import pytest

from watchdog.model import AclCredentials, Secret
from watchdog.native import run_canary_client
from watchdog.native._credentials import (
    ACL_CHANNEL,
    CredentialsError,
    credentials_line,
    read_credentials,
    sign_client,
)

SECRET = "canary-Secret-9000"
CREDENTIALS = AclCredentials("rmq-watchdog", Secret(SECRET), Secret("tok-12345"))

# Stands in for `python -m watchdog.native canary`: reports what it was given as its result.
_ECHO = (
    "import json, sys; "
    "print(json.dumps({'ok': False, 'received': False, "
    "'error': json.dumps({'argv': sys.argv[1:], 'stdin': sys.stdin.read()})}))"
)


def test_credentials_line_round_trip() -> None:
    line = credentials_line(CREDENTIALS)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert read_credentials(io.StringIO(line.decode())) == CREDENTIALS
    plain = AclCredentials("rmq-watchdog", Secret(SECRET))
    assert read_credentials(io.StringIO(credentials_line(plain).decode())) == plain


@pytest.mark.parametrize(
    "line",
    [
        "",
        "not json " + SECRET,
        "[1]",
        '{"access_key": "a"}',
        '{"access_key": "", "secret_key": "s"}',
    ],
)
def test_a_bad_credentials_line_is_refused_without_quoting_it(line: str) -> None:
    with pytest.raises(CredentialsError) as caught:
        read_credentials(io.StringIO(line + "\n"))
    assert SECRET not in str(caught.value)


def test_the_child_gets_the_account_on_stdin_not_in_its_argv() -> None:
    outcome = asyncio.run(
        run_canary_client(
            ["127.0.0.1:9876"],
            "RMQ_WATCHDOG_CANARY_broker-a",
            timeout_seconds=10.0,
            command=[sys.executable, "-c", _ECHO],
            credentials=CREDENTIALS,
        )
    )
    assert outcome.error is not None
    seen = json.loads(outcome.error)
    assert "--credentials-stdin" in seen["argv"]
    assert not any(SECRET in arg or "tok-12345" in arg for arg in seen["argv"])
    assert read_credentials(io.StringIO(seen["stdin"])) == CREDENTIALS


def test_without_credentials_the_child_reads_nothing() -> None:
    outcome = asyncio.run(
        run_canary_client(
            ["127.0.0.1:9876"],
            "RMQ_WATCHDOG_CANARY_broker-a",
            timeout_seconds=10.0,
            command=[sys.executable, "-c", _ECHO],
        )
    )
    assert outcome.error is not None
    seen = json.loads(outcome.error)
    assert "--credentials-stdin" not in seen["argv"] and seen["stdin"] == ""


class _Client:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def set_session_credentials(self, access_key: str, secret_key: str, channel: str) -> None:
        self.calls.append((access_key, secret_key, channel))


def test_sign_client_gives_librocketmq_the_account() -> None:
    client = _Client()
    sign_client(client, CREDENTIALS)
    assert client.calls == [("rmq-watchdog", SECRET, ACL_CHANNEL)]
    unsigned = _Client()
    sign_client(unsigned, None)
    assert unsigned.calls == []
