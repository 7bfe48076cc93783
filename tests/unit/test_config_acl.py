"""[acl]: the account from the config or a 0600/0400 file, one clear error else, never shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from watchdog.config import ConfigError, load_config, read_acl_secret
from watchdog.model import Secret

SECRET = "acl-Secret-0123456789"

BASE = """
cluster_name = "XdclassCluster"
nameservers = ["127.0.0.1:9876"]

[[brokers]]
broker_name = "broker-a"
broker_id = 0
addr = "127.0.0.1:10911"
properties = "/etc/rocketmq/broker-a.properties"
start = ["systemctl", "start", "rocketmq-broker@a"]
stop = ["systemctl", "stop", "rocketmq-broker@a"]
"""


def config_with(tmp_path: Path, acl: str, extra: str = "") -> Path:
    path = tmp_path / "watchdog.toml"
    path.write_text(BASE + extra + "\n[acl]\n" + acl)
    return path


def secret_file(tmp_path: Path, mode: int, text: str = SECRET + "\n") -> Path:
    path = tmp_path / "acl-secret"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def one_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: acl")
    assert SECRET not in message
    return message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_secret_key_file_0600_or_0400_gives_the_account(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path, mode)
    config = load_config(
        config_with(tmp_path, f'access_key = "rmq-watchdog"\nsecret_key_file = "{path}"\n')
    )
    credentials = config.acl_credentials()
    assert credentials is not None
    assert credentials.access_key == "rmq-watchdog"
    assert credentials.secret_key == Secret(SECRET)  # the line break trimmed, as RocketMQ trims
    assert credentials.security_token is None


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_a_secret_file_open_to_group_or_others_is_one_error(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path, mode)
    message = one_error(
        config_with(tmp_path, f'access_key = "rmq-watchdog"\nsecret_key_file = "{path}"\n')
    )
    assert message == (
        f"{tmp_path / 'watchdog.toml'}: acl: secret_key_file {path}: mode {mode:04o} lets group "
        "or others at the secret key; chmod 600 it (0600 or 0400)"
    )


def test_a_missing_secret_file_is_one_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    message = one_error(
        config_with(tmp_path, f'access_key = "rmq-watchdog"\nsecret_key_file = "{missing}"\n')
    )
    assert message.endswith(
        f"acl: secret_key_file {missing}: cannot read: No such file or directory"
    )


def test_a_folder_an_empty_or_short_file_is_one_error(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir(mode=0o700)
    assert "not a regular file" in one_error(
        config_with(tmp_path, f'access_key = "rmq-watchdog"\nsecret_key_file = "{folder}"\n')
    )
    short = secret_file(tmp_path, 0o600, "123456\n")
    assert "fewer than 7 characters" in one_error(
        config_with(tmp_path, f'access_key = "rmq-watchdog"\nsecret_key_file = "{short}"\n')
    )
    latin = tmp_path / "latin"
    latin.write_bytes(b"\xe9t\xe9-secret-key")
    latin.chmod(0o600)
    assert "not UTF-8" in one_error(
        config_with(tmp_path, f'access_key = "rmq-watchdog"\nsecret_key_file = "{latin}"\n')
    )


def test_one_secret_source_exactly(tmp_path: Path) -> None:
    path = secret_file(tmp_path, 0o600)
    both = f'access_key = "rmq-watchdog"\nsecret_key = "{SECRET}"\nsecret_key_file = "{path}"\n'
    assert "give secret_key or secret_key_file" in one_error(config_with(tmp_path, both))
    assert "give secret_key or secret_key_file" in one_error(
        config_with(tmp_path, 'access_key = "rmq-watchdog"\n')
    )


def test_keys_rocketmq_would_never_accept_are_refused(tmp_path: Path) -> None:
    assert "acl.access_key" in one_error(
        config_with(tmp_path, f'access_key = "rmq"\nsecret_key = "{SECRET}"\n')
    )
    message = one_error(config_with(tmp_path, 'access_key = "rmq-watchdog"\nsecret_key = "123"\n'))
    assert "shorter than 7 characters" in message and "123" not in message.split("acl:")[1]
    assert "did you mean 'secret_key'" in one_error(
        config_with(tmp_path, f'access_key = "rmq-watchdog"\nsecret_kye = "{SECRET}"\n')
    )


def test_inline_secret_and_token_never_show(tmp_path: Path) -> None:
    config = load_config(
        config_with(
            tmp_path,
            f'access_key = "rmq-watchdog"\nsecret_key = "{SECRET}"\n'
            'security_token = "token-value-42"\n',
        )
    )
    credentials = config.acl_credentials()
    assert credentials is not None and credentials.security_token == Secret("token-value-42")
    for text in (repr(config), str(config), repr(config.acl), repr(credentials)):
        assert SECRET not in text and "token-value-42" not in text
    assert SECRET not in config.model_dump_json()


def test_acl_goes_with_in_place_promotion(tmp_path: Path) -> None:
    # The plug-in's MAC leaves ACL's fields out (watchdog/remoting/_plugin.py), so the two go
    # together: the plug-in's requests are signed for ACL like any other.
    plugin = tmp_path / "plugin.secret"
    plugin.write_text("0123456789abcdef0123\n")
    plugin.chmod(0o600)
    extra = f'\n[failover]\npromotion = "inplace"\nplugin_secret_file = "{plugin}"\n'
    path = config_with(tmp_path, f'access_key = "rmq-watchdog"\nsecret_key = "{SECRET}"\n', extra)
    config = load_config(path)
    assert config.failover.promotion == "inplace"
    credentials = config.acl_credentials()
    assert credentials is not None and credentials.access_key == "rmq-watchdog"


def test_without_acl_nothing_is_signed(tmp_path: Path) -> None:
    path = tmp_path / "watchdog.toml"
    path.write_text(BASE)
    assert load_config(path).acl_credentials() is None


def test_read_acl_secret_trims_like_rocketmq(tmp_path: Path) -> None:
    path = secret_file(tmp_path, 0o400, f"  {SECRET}\r\n")
    assert read_acl_secret(path) == SECRET
