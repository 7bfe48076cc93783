"""What `sandbox up --netns` writes, checked without root: names, addresses, the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from watchdog.config import SshHost, load_config
from watchdog.tools.sandbox import NetnsTopology, SandboxError, broker_properties_text
from watchdog.tools.sandbox._netns import (
    SshAccess,
    netns_watchdog_toml_text,
    plan_netns_cluster,
    run_watchdog_script,
)


def test_names_fit_linux_interface_names_and_addresses_follow_the_seed() -> None:
    net = NetnsTopology.plan("rq1a2b", 0)
    assert net.bridge == "rq1a2b-br"
    for host in net.hosts:
        assert len(host.veth) <= 15 and len(host.netns) <= 15
    assert {h.name: h.address for h in net.hosts} == {
        "server1": "198.18.0.11",
        "server2": "198.18.0.12",
        "server3": "198.18.0.13",
        "server4": "198.18.0.14",
        "watchdog": "198.18.0.21",
        "vantage": "198.18.0.22",
        "clients": "198.18.0.23",
    }
    assert net.observer_address == "198.18.0.1"
    assert net.exec_argv("server3", ["true"])[1:] == ["netns", "exec", "rq1a2b-s3", "true"]
    assert NetnsTopology.from_doc(net.to_doc()).to_doc() == net.to_doc()
    with pytest.raises(SandboxError, match="no host"):
        net.host("server9")
    with pytest.raises(SandboxError, match="at most 8"):
        NetnsTopology.plan("much-too-long")


def test_partition_semantics_as_blocked_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    net = NetnsTopology.plan("rq0000", 0)
    monkeypatch.setattr(net, "_apply", lambda: None)  # no namespaces here: the pairs only
    net.partition(["watchdog"], ["server3", "server4"])
    assert net.blocked == {
        ("watchdog", "server3"), ("watchdog", "server4"),
        ("server3", "watchdog"), ("server4", "watchdog"),
    }  # fmt: skip
    net.cut("vantage", "server3")
    assert ("vantage", "server3") in net.blocked and ("server3", "vantage") not in net.blocked
    net.isolate("clients", replace=True)
    assert net.blocked == {("clients", h) for h in net.names if h != "clients"} | {
        (h, "clients") for h in net.names if h != "clients"
    }
    net.isolate("server1", observer=True, replace=True)
    assert ("server1", "observer") in net.blocked and ("observer", "server1") in net.blocked
    net.heal()
    assert net.blocked == frozenset()
    with pytest.raises(SandboxError, match="two groups"):
        net.partition(["server1"], ["server1", "server2"])


def test_the_config_loads_with_ssh_hosts_and_a_vantage_check(tmp_path: Path) -> None:
    net = NetnsTopology.plan("rq1a2b", 0)
    topology = plan_netns_cluster(net, "sync")
    ssh = SshAccess("root", 22, str(tmp_path / "client"), str(tmp_path / "known_hosts"))
    path = tmp_path / "watchdog.toml"
    path.write_text(netns_watchdog_toml_text(tmp_path, topology, net, ssh, "/venv/bin/python"))
    config = load_config(path)
    assert config.nameservers == ("198.18.0.11:9876", "198.18.0.12:9876")
    assert [(b.key, b.addr, b.host) for b in config.brokers] == [
        ("broker-a:0", "198.18.0.13:10911", "server3"),
        ("broker-a:1", "198.18.0.14:10911", "server4"),
    ]
    server3 = config.hosts["server3"]
    assert isinstance(server3, SshHost)
    assert (server3.address, server3.port, server3.user) == ("198.18.0.13", 22, "root")
    assert server3.client_keys == (ssh.client_key,) and server3.known_hosts == ssh.known_hosts
    (check,) = config.secondary_checks
    assert check.host == "vantage" and isinstance(config.hosts["vantage"], SshHost)
    assert check.command == ("/venv/bin/python", "-m", "watchdog.ping", "{addr}")
    assert config.brokers[0].stop == (
        "/venv/bin/python", "-m", "watchdog", "sandbox", "stop",
        "--dir", str(tmp_path), "--broker", "broker-a:0",
    )  # fmt: skip
    assert "198.18.0.21:9108" in path.read_text()
    props = broker_properties_text(
        topology.brokers[1], topology.namesrv_addr, tmp_path, rocketmq_version="4.9.7"
    )
    assert "brokerIP1=198.18.0.14\n" in props and "brokerRole=SLAVE\n" in props
    assert "namesrvAddr=198.18.0.11:9876;198.18.0.12:9876\n" in props
    script = run_watchdog_script(tmp_path, net, "/venv/bin/python")
    assert "netns exec rq1a2b-wd /venv/bin/python -m watchdog run -c" in script
