"""The docker host backend against a real Docker engine: the cases of tests/docker_host_cases.py
on a throwaway busybox container (see conftest.py)."""

from __future__ import annotations

import pytest

from tests.docker_host_cases import *  # noqa: F403 - the shared cases run here on a real engine

pytestmark = pytest.mark.integration
