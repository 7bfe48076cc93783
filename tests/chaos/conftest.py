"""The chaos matrix uses the integration tests' real sandboxes."""

from tests.integration.conftest import fresh_sandbox, sandbox_cluster

__all__ = ["fresh_sandbox", "sandbox_cluster"]
