"""docker-compose.yml, the Dockerfile and config/watchdog.docker.toml agree with each other and
with the files in the repository.

Nothing here starts a container: the files are checked as data, wherever the unit tests run.
tests/docker/test_compose_failover.py brings the demo cluster up (pytest-docker) and fails it
over, where a Docker engine with the compose plugin is available (`make test-docker`).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from watchdog.config import DockerHost, load_config
from watchdog.model import PropertiesFile

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
WATCHDOG_TOML = REPO / "config" / "watchdog.docker.toml"

ROCKETMQ_IMAGE = "apache/rocketmq:4.9.7"
ROCKETMQ_HOME = "/home/rocketmq/rocketmq-4.9.7"
BROKERS = {"broker-a": ("broker-a", 0), "broker-a-s": ("broker-a", 1)}  # service -> name, id


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(source, target, mode) of each short-syntax volume entry."""
    out = []
    for entry in service.get("volumes", []):
        assert isinstance(entry, str), f"long-syntax volume not expected: {entry!r}"
        source, target, *mode = entry.split(":")
        out.append((source, target, mode[0] if mode else "rw"))
    return out


def _host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The repository file a container path of this service comes from, via a bind mount."""
    for source, target, _ in _mounts(service):
        if source.startswith("./"):
            try:
                rest = PurePosixPath(container_path).relative_to(target)
            except ValueError:
                continue
            return REPO / source[2:] / rest
    return None


def _shell_words(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    if command[:2] == ["sh", "-c"]:
        return shlex.split(command[2])
    return list(command)


def _option(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


def _static_ip(service: dict[str, Any]) -> str:
    return str(service["networks"]["rmq"]["ipv4_address"])


def _properties(service_name: str) -> PropertiesFile:
    service = _services()[service_name]
    container_path = _option(_shell_words(service), "-c")
    host_path = _host_path(service, container_path)
    assert host_path is not None, f"{service_name}: {container_path} is not in a bind mount"
    # The sandbox work writes config/broker-a*.properties; until then this fails, by name.
    assert host_path.is_file(), f"{host_path.relative_to(REPO)} is missing (mounted by compose)"
    return PropertiesFile.parse(host_path.read_text(encoding="latin-1"))


# --- the compose file ------------------------------------------------------------------------


def test_services_and_images() -> None:
    services = _services()
    assert set(services) == {"namesrv1", "namesrv2", "broker-a", "broker-a-s", "watchdog"}
    for name in ("namesrv1", "namesrv2", *BROKERS):
        assert services[name]["image"] == ROCKETMQ_IMAGE, name
    assert services["watchdog"]["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    for name in ("namesrv1", "namesrv2"):
        assert services[name]["command"] == ["sh", f"{ROCKETMQ_HOME}/bin/mqnamesrv"]


def test_bind_mount_sources_exist_and_named_volumes_are_declared() -> None:
    declared = set(_compose().get("volumes") or {})
    used: set[str] = set()
    for name, service in _services().items():
        for source, target, mode in _mounts(service):
            assert mode in ("ro", "rw"), f"{name}: mode {mode!r}"
            assert target.startswith("/"), f"{name}: {target} is not absolute"
            if source.startswith("./"):
                assert (REPO / source[2:]).exists(), f"{name}: {source} is not in the repo"
            elif source == target == "/var/run/docker.sock":
                assert name == "watchdog", f"{name}: only the watchdog gets the engine socket"
            elif source.startswith("/"):
                pytest.fail(f"{name}: host path {source} ties the demo to one machine")
            else:
                used.add(source)
    assert used == declared, "named volumes used and declared differ"


def test_static_addresses_fit_the_network() -> None:
    subnet = ipaddress.ip_network(_compose()["networks"]["rmq"]["ipam"]["config"][0]["subnet"])
    addresses = [_static_ip(s) for s in _services().values()]
    assert len(addresses) == len(set(addresses)), "two services share an address"
    for address in addresses:
        ip = ipaddress.ip_address(address)
        assert ip in subnet and ip not in (subnet.network_address, subnet.broadcast_address)
        assert int(ip) - int(subnet.network_address) > 1  # .1 is the network's gateway


def test_brokers_start_through_the_gate_with_their_own_properties() -> None:
    services = _services()
    for name in BROKERS:
        service = services[name]
        script = service["command"][2]
        # The gate runs first and the broker only if it exits 0 (&&), on the same file.
        gate, broker = script.split(" && ", 1)
        gate_words, broker_words = shlex.split(gate), shlex.split(broker)
        assert broker_words[:3] == ["exec", "sh", f"{ROCKETMQ_HOME}/bin/mqbroker"]
        properties = _option(broker_words, "-c")
        assert gate_words[1:] == [properties]
        assert PurePosixPath(properties).name == f"{name}.properties"
        gate_file = _host_path(service, gate_words[0])
        assert gate_file == REPO / "deploy" / "broker-gate" / "rmq-broker-gate"
        assert _option(broker_words, "-n") == "namesrv1:9876;namesrv2:9876"
        assert set(service["depends_on"]) >= {"namesrv1", "namesrv2"}
        # The store survives a container restart; it is the broker's default storePathRootDir.
        assert f"{name}-store" in {s for s, t, _ in _mounts(service) if t == "/home/rocketmq/store"}


def test_watchdog_service_matches_its_config() -> None:
    service = _services()["watchdog"]
    config_path = _option(service["command"], "-c")
    assert service["command"][0] == "run"
    assert _host_path(service, config_path) == WATCHDOG_TOML
    assert ("watchdog-state", "/var/lib/rmq-watchdog", "rw") in _mounts(service)
    assert ("/var/run/docker.sock", "/var/run/docker.sock", "rw") in _mounts(service)
    assert service["group_add"] == ["${DOCKER_GID:-0}"]
    data = tomllib.loads(WATCHDOG_TOML.read_text())
    assert data["state_dir"] == "/var/lib/rmq-watchdog"
    port = data["metrics"]["listen"].rsplit(":", 1)[1]
    assert f"127.0.0.1:{port}:{port}" in service["ports"]


# --- config/watchdog.docker.toml -------------------------------------------------------------


def test_watchdog_docker_toml_names_the_compose_cluster() -> None:
    data = tomllib.loads(WATCHDOG_TOML.read_text())
    services = _services()
    assert data["nameservers"] == ["namesrv1:9876", "namesrv2:9876"]
    assert {n.split(":")[0] for n in data["nameservers"]} <= set(services)
    by_key = {(b["broker_name"], b["broker_id"]): b for b in data["brokers"]}
    assert set(by_key) == set(BROKERS.values())
    for service_name, key in BROKERS.items():
        broker = by_key[key]
        service = services[service_name]
        # brokerIP1 is unset, so the broker registers its static address: the watchdog's addr.
        assert broker["addr"] == f"{_static_ip(service)}:10911"
        assert broker["properties"] == _option(_shell_words(service), "-c")
        host = data["hosts"][broker["host"]]
        assert host["container"] == service["container_name"]
        assert broker["start"] == ["docker", "start", service["container_name"]]
        assert broker["stop"][-1] == service["container_name"]
        # A hung master is fenced by SIGKILL, not a graceful stop that waits its time out.
        assert broker["kill"] == ["docker", "kill", service["container_name"]]


def test_watchdog_docker_toml_is_valid() -> None:
    config = load_config(WATCHDOG_TOML)
    assert config.group_names() == ("broker-a",)
    assert config.metrics.listen == "0.0.0.0:9108"
    services = _services()
    for name, host in config.hosts.items():
        assert isinstance(host, DockerHost), name
        assert host.container == services[name]["container_name"]
        # The socket the watchdog's container has mounted.
        assert host.socket == "/var/run/docker.sock"


# --- broker properties in config/ ------------------------------------------------------------


@pytest.mark.parametrize("service_name", sorted(BROKERS))
def test_broker_properties_fit_the_compose_network(service_name: str) -> None:
    """What docker-compose.yml and watchdog.docker.toml assume of config/<broker>.properties."""
    props = _properties(service_name)
    broker_name, broker_id = BROKERS[service_name]
    ip = _static_ip(_services()[service_name])
    assert props.get("brokerName") == broker_name
    assert int(props.get("brokerId") or "0") == broker_id
    role = props.get("brokerRole") or "ASYNC_MASTER"
    assert (role == "SLAVE") == (broker_id != 0), role
    assert props.get("brokerClusterName") == "XdclassCluster"
    # Unset, or the static address: anything else registers an address no one can reach.
    for key in ("brokerIP1", "brokerIP2"):
        assert props.get(key) in (None, ip), f"{key}={props.get(key)}"
    assert (props.get("listenPort") or "10911") == "10911"
    for key in ("storePathRootDir", "storePathCommitLog"):
        value = props.get(key)
        assert value is None or value.startswith("/home/rocketmq/store"), f"{key}={value}"


# --- Dockerfile and .dockerignore ------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def test_dockerfile() -> None:
    steps = _instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(arg for op, arg in steps if op == "RUN")
    assert "pip install ." in runs
    assert ("USER", "rmq-watchdog") in steps  # not root
    assert ("ENTRYPOINT", '["rmq-watchdog"]') in steps
    cmd = next(arg for op, arg in steps if op == "CMD")
    assert cmd.startswith('["run", "-c", ')


def test_dockerignore_keeps_what_the_build_copies() -> None:
    rules = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "the context starts empty and names what it needs"
    included = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = [
        src.rstrip("/")
        for op, arg in _instructions() if op == "COPY"
        for src in arg.split()[:-1]
    ]
    assert copied, "no COPY in the Dockerfile"
    for src in copied:
        assert src in included, f"COPY {src} but .dockerignore excludes it"
        assert (REPO / src).exists(), src
