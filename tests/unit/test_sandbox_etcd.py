"""`sandbox up --etcd` without a JVM: the port plan, the three instance configs, the etcd
record in cluster.json. The real cluster: tests/integration/test_sandbox_etcd.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from watchdog.config import load_config
from watchdog.tools.sandbox import Sandbox, SandboxError, plan_topology
from watchdog.tools.sandbox._etcd import EtcdProc, etcd_doc, etcd_instances, etcd_procs
from watchdog.tools.sandbox._files import render_files
from watchdog.tools.sandbox._runtime import Jvm


def test_etcd_and_instance_ports_sit_in_the_block_no_broker_uses() -> None:
    for groups, slaves in ((1, 1), (1, 0), (3, 2), (26, 8)):
        plain = plan_topology(22000, groups=groups, slaves=slaves)
        t = plan_topology(22000, groups=groups, slaves=slaves, etcd=True)
        assert t.instance_metrics_ports == (22003, 22004)
        assert t.etcd_ports == tuple(range(22013, 22019))
        assert len(set(t.ports())) == len(t.ports())  # no port used twice
        assert set(plain.ports()) < set(t.ports())
        span = 10 * (groups * (1 + slaves) + 1)
        assert max(t.ports()) < 22000 + span  # the block's size is unchanged
    assert plan_topology(22000).etcd_ports == ()


def _render(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **options: object) -> Path:
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    d = tmp_path / "box"
    topology = plan_topology(22000, etcd=True)
    files = render_files(
        d,
        topology,
        Jvm(tmp_path / "lib", "4.9.7", "256m", "128m", "disabled"),
        extra={"etcd": etcd_doc(d, topology)},
        instances=etcd_instances(topology),
        **options,  # type: ignore[arg-type]
    )
    d.mkdir()
    (d / "watchdog.toml").write_text(files.config_text)
    for path, text in {**files.instance_configs, **files.private_texts}.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if path in files.private_texts:
            path.chmod(0o600)
    (d / "cluster.json").write_text(json.dumps(files.cluster))
    return d


def test_three_configs_one_etcd_each_its_own_name_state_dir_and_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _render(tmp_path, monkeypatch, plugin_secret="s" * 32)
    configs = [load_config(d / name) for name in ("watchdog.toml", "watchdog-2.toml",
                                                  "watchdog-3.toml")]  # fmt: skip
    assert [c.instance_name for c in configs] == ["wd-1", "wd-2", "wd-3"]
    assert [c.state_dir for c in configs] == [
        str(d / "watchdog-state"), str(d / "watchdog-state-2"), str(d / "watchdog-state-3")
    ]  # fmt: skip
    assert [c.metrics.listen for c in configs] == [
        "127.0.0.1:22002", "127.0.0.1:22003", "127.0.0.1:22004"
    ]  # fmt: skip
    for c in configs:
        assert c.etcd is not None
        assert c.etcd.endpoints == ("127.0.0.1:22013", "127.0.0.1:22015", "127.0.0.1:22017")
        assert c.etcd.lease_ttl_seconds == 3 and c.etcd.request_timeout_seconds == 1
        assert c.etcd_prefix() == "/rmq-watchdog/XdclassCluster"
        # --promotion inplace still ends up in every instance's [failover]
        assert c.failover.promotion == "inplace"
        assert c.brokers == configs[0].brokers


def test_the_etcd_record_names_members_instances_and_each_members_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _render(tmp_path, monkeypatch)
    box = Sandbox(d)
    members = box.etcd_members()
    assert [m.name for m in members] == ["m1", "m2", "m3"]
    assert all(m.pid is None and m.state() == "stopped" for m in members)
    m1 = members[0]
    assert m1.data_dir == d / "etcd" / "m1" / "data"
    assert f"--data-dir={m1.data_dir}" in m1.argv
    assert "--listen-client-urls=http://127.0.0.1:22013" in m1.argv
    assert (
        "--initial-cluster=m1=http://127.0.0.1:22014,m2=http://127.0.0.1:22016,"
        "m3=http://127.0.0.1:22018"
    ) in m1.argv
    assert box.instance_config_paths() == [
        d / "watchdog.toml", d / "watchdog-2.toml", d / "watchdog-3.toml"
    ]  # fmt: skip
    assert EtcdProc.from_json(m1.to_json()) == m1
    assert etcd_procs({"nameservers": []}) == []


def test_a_plain_sandbox_writes_one_config_without_etcd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    files = render_files(
        tmp_path / "box",
        plan_topology(22000),
        Jvm(tmp_path / "lib", "4.9.7", "256m", "128m", "disabled"),
    )
    assert files.instance_configs == {}
    assert "[etcd]" not in files.config_text and "instance_name" not in files.config_text
    assert "etcd" not in files.cluster


def test_etcd_with_netns_or_without_an_etcd_binary_is_refused_before_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SandboxError, match="--etcd is not supported with --netns"):
        Sandbox(tmp_path / "a").up(etcd=True, netns=True)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("watchdog.tools.etcd.shutil.which", lambda _name: None)
    monkeypatch.setattr("watchdog.tools.sandbox._cluster.etcd_binary", lambda: "/nonexistent/etcd")
    with pytest.raises(SandboxError, match="/nonexistent/etcd not found: --etcd needs etcd"):
        Sandbox(tmp_path / "b").up(etcd=True)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
