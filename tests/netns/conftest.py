"""Fixtures for the network-namespace cluster: `netns_cluster` (fresh per test), a shared one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.netns.harness import NetnsCluster, netns_cluster_in


@pytest.fixture
def netns_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsCluster]:
    """A fresh `sandbox up --netns` cluster for this test alone (faults, kills and failovers
    allowed); taken down afterwards, and the test fails if a namespace or link is left.
    Fails (never skips) where namespaces cannot be made (not root, no ip/nft)."""
    with netns_cluster_in(
        tmp_path_factory.mktemp("netns-sandbox"), tmp_path_factory.mktemp("netns-test")
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def netns_cluster_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsCluster]:
    """One cluster for a whole test module: tests must heal what they break."""
    with netns_cluster_in(
        tmp_path_factory.mktemp("netns-sandbox"), tmp_path_factory.mktemp("netns-test")
    ) as cluster:
        yield cluster
