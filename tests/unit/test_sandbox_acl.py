"""`sandbox up --acl`'s files, rendered without a JVM: aclEnable, plain_acl.yml, the [acl] table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from watchdog.config import load_config
from watchdog.model import PropertiesFile
from watchdog.tools.sandbox import Sandbox, SandboxError, plan_topology
from watchdog.tools.sandbox._acl import (
    ACL_ADMIN_KEY,
    ACL_CLIENT_KEY,
    acl_credentials,
    new_acl_setup,
)
from watchdog.tools.sandbox._files import render_files
from watchdog.tools.sandbox._plugin import write_private
from watchdog.tools.sandbox._runtime import Jvm


@pytest.fixture
def java(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))


@pytest.mark.usefixtures("java")
def test_acl_files_turn_acl_on_everywhere_and_sign_the_watchdog_as_admin(tmp_path: Path) -> None:
    d = tmp_path / "box"
    setup = new_acl_setup()
    jvm = Jvm(tmp_path / "lib", "4.9.7", "256m", "128m", "disabled")
    files = render_files(d, plan_topology(22000, groups=2), jvm, acl=setup)
    for plan in plan_topology(22000, groups=2).brokers:
        props = PropertiesFile.parse(files.texts[d / plan.properties_name]).as_dict()
        assert props["aclEnable"] == "true"
    plain = yaml.safe_load(files.private_texts[d / "conf" / "plain_acl.yml"])
    assert plain["globalWhiteRemoteAddresses"] == []
    accounts = {a["accessKey"]: a for a in plain["accounts"]}
    assert accounts[ACL_ADMIN_KEY]["admin"] is True
    assert accounts[ACL_ADMIN_KEY]["secretKey"] == setup.admin.secret_key.reveal()
    assert accounts[ACL_CLIENT_KEY]["admin"] is False
    assert accounts[ACL_CLIENT_KEY]["defaultTopicPerm"] == "PUB|SUB"
    assert all("whiteRemoteAddress" not in a for a in plain["accounts"])
    # cluster.json names the files, never a key
    doc = json.dumps(files.cluster)
    assert setup.admin.secret_key.reveal() not in doc
    assert setup.client.secret_key.reveal() not in doc
    assert files.cluster["acl"]["admin"]["secret_key_file"] == str(d / "acl-admin.secret")
    assert setup.admin.secret_key.reveal() not in files.config_text
    # written as `up` writes them: the config loads and signs as the admin account
    d.mkdir()
    (d / "conf").mkdir()
    for path, text in files.private_texts.items():
        write_private(path, text)
    (d / "watchdog.toml").write_text(files.config_text)
    config = load_config(d / "watchdog.toml")
    assert config.acl_credentials() == setup.admin
    assert acl_credentials(dict(files.cluster)) == setup.admin
    assert acl_credentials(dict(files.cluster), "client") == setup.client
    assert (d / "acl-client.secret").stat().st_mode & 0o077 == 0


@pytest.mark.usefixtures("java")
def test_acl_with_in_place_promotion_writes_both(tmp_path: Path) -> None:
    d = tmp_path / "box"
    setup = new_acl_setup()
    jvm = Jvm(tmp_path / "lib", "4.9.7", "256m", "128m", "disabled")
    secret = "0123456789abcdef0123456789abcdef"
    files = render_files(d, plan_topology(22000), jvm, plugin_secret=secret, acl=setup)
    props = PropertiesFile.parse(files.texts[d / "broker-a.properties"]).as_dict()
    assert props["aclEnable"] == "true"
    d.mkdir()
    (d / "conf").mkdir()
    for path, text in files.private_texts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, text)
    (d / "watchdog.toml").write_text(files.config_text)
    config = load_config(d / "watchdog.toml")
    assert config.failover.promotion == "inplace"
    assert config.failover.plugin_secret_file == str(d / "plugin.secret")
    assert config.acl_credentials() == setup.admin


@pytest.mark.usefixtures("java")
def test_without_acl_nothing_changes(tmp_path: Path) -> None:
    d = tmp_path / "box"
    jvm = Jvm(tmp_path / "lib", "4.9.7", "256m", "128m", "disabled")
    files = render_files(d, plan_topology(22000), jvm)
    assert "aclEnable" not in files.texts[d / "broker-a.properties"]
    assert "[acl]" not in files.config_text and "acl" not in files.cluster
    assert acl_credentials(dict(files.cluster)) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version": "5.3.3"}, "--acl needs RocketMQ 4.9.x"),
        ({"netns": True}, "--acl is not supported with --netns"),
    ],
)
def test_acl_refuses_what_it_cannot_do(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(SandboxError, match=message):
        Sandbox(tmp_path / "box").up(acl=True, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "box").exists()
