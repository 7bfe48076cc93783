"""[etcd] and instance_name: defaults, the key prefix, and one clear error per bad value."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from watchdog.config import ConfigError, parse_config, read_etcd_password

BASE: dict[str, Any] = {
    "cluster_name": "prod",
    "nameservers": ["127.0.0.1:9876"],
    "brokers": [
        {
            "broker_name": "broker-a",
            "broker_id": 0,
            "addr": "127.0.0.1:10911",
            "properties": "/etc/rocketmq/a.properties",
            "start": ["start-a"],
            "stop": ["stop-a"],
        }
    ],
}


def with_etcd(**etcd: Any) -> dict[str, Any]:
    return {**BASE, "etcd": {"endpoints": ["127.0.0.1:2379"], **etcd}}


def test_without_etcd_one_instance_runs_alone() -> None:
    config = parse_config(BASE)
    assert config.etcd is None
    assert config.etcd_prefix() is None
    assert config.instance_name == socket.gethostname()


def test_etcd_defaults() -> None:
    config = parse_config(with_etcd())
    assert config.etcd is not None
    assert config.etcd_prefix() == "/rmq-watchdog/prod"
    assert config.etcd.lease_ttl_seconds == 10.0
    assert config.etcd.request_timeout_seconds == 2.0  # lease_ttl / 5
    assert config.etcd.cacert is None and config.etcd.user is None
    assert config.etcd.password_text() is None


def test_etcd_values() -> None:
    config = parse_config(
        {
            **with_etcd(
                endpoints=["10.0.0.1:2379", "10.0.0.2:2379"],
                prefix="/watchdogs/prod/",
                lease_ttl="3s",
                timeout="1s",
                user="wd",
                password="pw",
            ),
            "instance_name": "wd-b.example",
        }
    )
    assert config.etcd is not None
    assert config.etcd.endpoints == ("10.0.0.1:2379", "10.0.0.2:2379")
    assert config.etcd_prefix() == "/watchdogs/prod"
    assert config.etcd.request_timeout_seconds == 1.0
    assert config.etcd.password_text() == "pw"
    assert config.instance_name == "wd-b.example"
    assert "pw" not in repr(config.etcd)


@pytest.mark.parametrize(
    ("etcd", "message"),
    [
        ({"endpoints": []}, "etcd.endpoints: must list at least 1 item"),
        ({"endpoints": ["etcd1"]}, "etcd.endpoints[0]: 'etcd1' is not host:port"),
        ({"endpoints": ["a:1", "a:1"]}, "etcd.endpoints: an endpoint is listed twice"),
        ({"lease_ttl": "2500ms"}, "etcd.lease_ttl: etcd leases are whole seconds, at least 2s"),
        ({"lease_ttl": "1s"}, "etcd.lease_ttl: etcd leases are whole seconds, at least 2s"),
        ({"lease_ttl": 10}, "etcd.lease_ttl: a duration needs its unit"),
        ({"lease_ttl": "4s", "timeout": "3s"}, "timeout must be at most half of lease_ttl"),
        ({"prefix": "rmq"}, "etcd.prefix: 'rmq' is not a key prefix"),
        ({"prefix": "/a b"}, "etcd.prefix: '/a b' is not a key prefix"),
        ({"user": "wd"}, "etcd: user and a password (password or password_file) go together"),
        ({"password": "pw"}, "etcd: user and a password (password or password_file) go together"),
        ({"cert": "/etc/hostname"}, "etcd: cert and key go together"),
        (
            {"cert": "/etc/hostname", "key": "/etc/hostname"},
            "etcd: cert and key need cacert",
        ),
        ({"cacert": "/nonexistent/ca.pem"}, "etcd: cacert /nonexistent/ca.pem: not a readable"),
        ({"lease": "3s"}, "etcd.lease: unknown key; did you mean 'lease_ttl'?"),
    ],
)
def test_bad_etcd_tables(etcd: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(with_etcd(**etcd))
    assert message in str(caught.value)


@pytest.mark.parametrize("name", ["", "-lead", "a/b", "a b", "x" * 64])
def test_bad_instance_names(name: str) -> None:
    with pytest.raises(ConfigError, match="instance_name: .* is not an instance name"):
        parse_config({**BASE, "instance_name": name})


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "etcd-password"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    config = parse_config(with_etcd(user="wd", password_file=str(secret)))
    assert config.etcd is not None
    assert config.etcd.password_text() == "s3cret"
    secret.write_text("rotated\n")  # read at each use: a rotated password applies
    assert config.etcd.password_text() == "rotated"


@pytest.mark.parametrize(
    ("mode", "content", "message"),
    [
        (0o644, "pw\n", "mode 0644 lets group or others at the password; chmod 600 it (0600 or 0400)"),  # noqa: E501
        (0o600, "\n", "empty"),
        (0o600, None, "cannot read: No such file or directory"),
    ],
)
def test_bad_password_files(tmp_path: Path, mode: int, content: str | None, message: str) -> None:
    secret = tmp_path / "etcd-password"
    if content is not None:
        secret.write_text(content)
        secret.chmod(mode)
    with pytest.raises(ConfigError) as caught:
        read_etcd_password(secret)
    assert str(caught.value) == f"password_file {secret}: {message}"
    with pytest.raises(ConfigError) as caught:
        parse_config(with_etcd(user="wd", password_file=str(secret)))
    assert f"etcd: password_file {secret}: {message}" in str(caught.value)


def test_password_and_password_file_exclude_each_other(tmp_path: Path) -> None:
    secret = tmp_path / "p"
    secret.write_text("pw")
    secret.chmod(0o600)
    with pytest.raises(ConfigError, match="give password or password_file, not both"):
        parse_config(with_etcd(user="wd", password="pw", password_file=str(secret)))
