"""Config validation: good files load, bad ones give one error naming the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from watchdog.commands._cli import cli
from watchdog.config import ConfigError, load_config, parse_config, read_plugin_secret

GOOD = """
cluster_name = "XdclassCluster"
nameservers = ["127.0.0.1:9876", "127.0.0.1:9877"]

[probe]
interval = "1s"
timeout = "800ms"

[detect]
down_after = "3s"

[[brokers]]
broker_name = "broker-a"
broker_id = 0
addr = "127.0.0.1:10911"
properties = "/etc/rocketmq/broker-a.properties"
start = ["systemctl", "start", "rocketmq-broker@a"]
stop = ["systemctl", "stop", "rocketmq-broker@a"]

[[brokers]]
broker_name = "broker-a"
broker_id = 1
addr = "127.0.0.1:10921"
properties = "/etc/rocketmq/broker-a-s.properties"
start = ["systemctl", "start", "rocketmq-broker@a-s"]
stop = ["systemctl", "stop", "rocketmq-broker@a-s"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "watchdog.toml"
    path.write_text(text)
    return path


def test_good_config_loads_with_units_converted(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.probe.interval_seconds == 1.0
    assert config.probe.timeout_seconds == pytest.approx(0.8)
    assert config.detect.down_after_seconds == 3.0
    assert config.group_names() == ("broker-a",)
    assert [b.key for b in config.group("broker-a")] == ["broker-a:0", "broker-a:1"]
    assert config.hosts["local"].kind == "local"


def test_example_config_in_repo_is_valid() -> None:
    config = load_config(Path(__file__).parents[2] / "config" / "watchdog.example.toml")
    assert config.cluster_name == "XdclassCluster"
    assert len(config.brokers) >= 2


def test_candidate_stop_defaults_to_kill_and_takes_graceful(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, GOOD)).failover.candidate_stop == "kill"
    graceful = GOOD + '\n[failover]\ncandidate_stop = "graceful"\n'
    assert load_config(write(tmp_path, graceful)).failover.candidate_stop == "graceful"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD + '\n[failover]\ncandidate_stop = "sigterm"\n'))
    assert "failover.candidate_stop" in str(info.value)
    assert "'graceful' or 'kill'" in str(info.value)


BAD: list[tuple[str, str, str]] = [
    ("bad port", GOOD.replace('"127.0.0.1:10911"', '"127.0.0.1:99999"'), "brokers[0].addr"),
    (
        "typo key",
        GOOD.replace('down_after = "3s"', 'down_afer = "3s"'),
        "detect.down_afer: unknown key; did you mean 'down_after'?",
    ),
    (
        "unreachable quorum",
        GOOD.replace('down_after = "3s"', 'down_after = "3s"\nquorum = 9'),
        "detect.quorum 9 can never be reached: there are at most",
    ),
    (
        "no nameserver",
        GOOD.replace('nameservers = ["127.0.0.1:9876", "127.0.0.1:9877"]', "nameservers = []"),
        "nameservers: must list at least 1 item",
    ),
    ("no unit", GOOD.replace('interval = "1s"', "interval = 1"), "probe.interval"),
    ("dup broker", GOOD.replace("broker_id = 1", "broker_id = 0"), "listed twice"),
    (
        "unknown host",
        GOOD.replace("broker_id = 1\n", 'broker_id = 1\nhost = "nowhere"\n'),
        "unknown host",
    ),
    (
        "empty start",
        GOOD.replace('start = ["systemctl", "start", "rocketmq-broker@a"]', "start = []"),
        "brokers[0].start",
    ),
    (
        "timeout > interval",
        GOOD.replace('timeout = "800ms"', 'timeout = "2s"'),
        "timeout must not exceed",
    ),
    (
        "no nameservers",
        GOOD.replace('nameservers = ["127.0.0.1:9876", "127.0.0.1:9877"]', "nameservers = []"),
        "nameservers",
    ),
    ("not toml", "cluster_name = [", "not valid TOML"),
]


@pytest.mark.parametrize(("label", "text", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_file_and_field(
    tmp_path: Path, label: str, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert expected in message


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_cli_rejects_bad_config_with_exit_2_and_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('"127.0.0.1:10911"', '"nonsense"'))
    result = CliRunner().invoke(cli, ["status", "-c", str(path)])
    assert result.exit_code == 2
    assert "brokers[0].addr" in result.output
    assert str(path) in result.output
    assert "Traceback" not in result.output


def test_errors_do_not_repeat_a_broken_list_as_empty() -> None:
    data: dict[str, Any] = {
        "cluster_name": "c",
        "nameservers": ["a:1"],
        "brokers": [
            {
                "broker_name": "b",
                "broker_id": 0,
                "addr": "x",
                "properties": "p",
                "start": ["s"],
                "stop": ["t"],
            }
        ],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert "at least 1 item" not in str(info.value)


# --- [failover] promotion and plugin_secret_file ------------------------------------------------


def secret_file(
    tmp_path: Path, text: str = "0123456789abcdef0123456789abcdef\n", mode: int = 0o600
) -> Path:
    path = tmp_path / "plugin.secret"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_promotion_defaults_to_restart_and_inplace_takes_a_private_secret_file(
    tmp_path: Path,
) -> None:
    assert load_config(write(tmp_path, GOOD)).failover.promotion == "restart"
    secret = secret_file(tmp_path)
    text = GOOD + f'\n[failover]\npromotion = "inplace"\nplugin_secret_file = "{secret}"\n'
    config = load_config(write(tmp_path, text))
    assert config.failover.promotion == "inplace"
    assert config.failover.plugin_secret_file == str(secret)
    assert read_plugin_secret(secret) == b"0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("none", 'promotion = "inplace" needs plugin_secret_file'),
        ("missing", "cannot read: No such file or directory"),
        ("group", "mode 0640 lets group or others at the secret; chmod 600 it (0600 or 0400)"),
        ("world", "mode 0604 lets group or others at the secret; chmod 600 it (0600 or 0400)"),
        ("short", "holds 15 bytes; the plug-in needs at least 16"),
        ("folder", "not a regular file"),
    ],
)
def test_an_unusable_secret_file_is_one_error_at_load(
    tmp_path: Path, setup: str, expected: str
) -> None:
    lines = '\n[failover]\npromotion = "inplace"\n'
    path = tmp_path / "plugin.secret"
    if setup == "group":
        secret_file(tmp_path, mode=0o640)
    elif setup == "world":
        secret_file(tmp_path, mode=0o604)
    elif setup == "short":
        secret_file(tmp_path, " 0123456789abcde \n")
    elif setup == "folder":
        path.mkdir()
    if setup != "none":
        lines += f'plugin_secret_file = "{path}"\n'
    config = write(tmp_path, GOOD + lines)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    message = str(info.value)
    assert message.startswith(f"{config}: failover: ")
    assert expected in message
    assert message.count("\n") == 0


def test_a_secret_file_is_checked_whenever_it_is_given(tmp_path: Path) -> None:
    secret = secret_file(tmp_path, mode=0o644)
    text = GOOD + f'\n[failover]\nplugin_secret_file = "{secret}"\n'
    with pytest.raises(ConfigError, match="lets group or others at the secret"):
        load_config(write(tmp_path, text))
    with pytest.raises(ConfigError, match="failover.promotion"):
        load_config(write(tmp_path, GOOD + '\n[failover]\npromotion = "hot"\n'))


def test_the_secret_is_trimmed_as_the_plugin_trims_it(tmp_path: Path) -> None:
    secret = secret_file(tmp_path, "\x00\t secret-of-sixteen-bytes \r\n\x1f")
    assert read_plugin_secret(secret) == b"secret-of-sixteen-bytes"
