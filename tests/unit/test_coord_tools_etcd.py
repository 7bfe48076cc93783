"""watchdog/tools/etcd.py: the members' plan and argv, and an [etcd] table the config accepts."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from watchdog.config import parse_config
from watchdog.tools.etcd import EtcdServerTls, etcd_toml_table, member_argv, plan_members

CONFIG = """
cluster_name = "sandbox"
nameservers = ["127.0.0.1:9876"]

[[brokers]]
broker_name = "broker-a"
broker_id = 0
addr = "127.0.0.1:10911"
properties = "/tmp/a.properties"
start = ["start"]
stop = ["stop"]
"""


def test_members_take_two_ports_each(tmp_path: Path) -> None:
    members = plan_members(tmp_path, [1, 2, 3, 4, 5, 6])
    assert [(m.name, m.client_port, m.peer_port) for m in members] == [
        ("m1", 1, 2),
        ("m2", 3, 4),
        ("m3", 5, 6),
    ]
    assert members[1].data_dir == tmp_path / "m2" / "data"
    assert members[2].endpoint == "127.0.0.1:5"
    with pytest.raises(ValueError, match="two ports per member"):
        plan_members(tmp_path, [1, 2, 3])


def test_argv(tmp_path: Path) -> None:
    members = plan_members(tmp_path, [1, 2, 3, 4])
    argv = member_argv(members[1], members, token="t", etcd="/usr/bin/etcd")
    assert argv[0] == "/usr/bin/etcd"
    assert "--name=m2" in argv
    assert "--initial-cluster=m1=http://127.0.0.1:2,m2=http://127.0.0.1:4" in argv
    assert "--listen-client-urls=http://127.0.0.1:3" in argv
    assert "--auto-compaction-mode=periodic" in argv
    assert not any(a.startswith("--cert-file") for a in argv)

    tls = EtcdServerTls(tmp_path / "ca.pem", tmp_path / "s.pem", tmp_path / "s-key.pem")
    argv = member_argv(members[0], members, token="t", tls=tls)
    assert "--listen-client-urls=https://127.0.0.1:1" in argv
    assert "--client-cert-auth" in argv
    assert f"--trusted-ca-file={tmp_path / 'ca.pem'}" in argv
    # peers stay on plain http (loopback)
    assert "--listen-peer-urls=http://127.0.0.1:2" in argv


def test_the_etcd_table_is_a_valid_config(tmp_path: Path) -> None:
    for name in ("ca.pem", "c.pem", "k.pem"):
        (tmp_path / name).write_text("x")
    table = etcd_toml_table(
        ["127.0.0.1:1", "127.0.0.1:3"],
        lease_ttl="3s",
        prefix="/rmq-watchdog/sandbox",
        cacert=tmp_path / "ca.pem",
        cert=tmp_path / "c.pem",
        key=tmp_path / "k.pem",
    )
    config = parse_config(tomllib.loads(CONFIG + table))
    assert config.etcd is not None
    assert config.etcd.endpoints == ("127.0.0.1:1", "127.0.0.1:3")
    assert config.etcd.lease_ttl_seconds == 3.0
    assert config.etcd.cacert == str(tmp_path / "ca.pem")
    assert config.etcd_prefix() == "/rmq-watchdog/sandbox"
    plain = parse_config(tomllib.loads(CONFIG + etcd_toml_table(["127.0.0.1:1"])))
    assert plain.etcd is not None and plain.etcd.lease_ttl_seconds == 10.0
