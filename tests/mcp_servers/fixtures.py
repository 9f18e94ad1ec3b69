"""pytest fixtures of the MCP test servers (a plugin of the suite, named in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mcp_servers.helpers import marked_processes, wait_until

#: How long the MCP servers of a test get to exit once its gateways stopped (stdin closed, 2 s
#: to exit, SIGTERM, 2 s, SIGKILL, on a busy host): a bound, not a pace.
SERVERS_GONE_S = 30


@pytest.fixture
def no_leaked_servers(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the test (its gateways stopped), no process carrying its module's ``MARKER``
    (see :mod:`mcp_servers.helpers`) may still be running. A module takes it for every test
    with ``pytestmark = pytest.mark.usefixtures("no_leaked_servers")``."""
    marker = request.module.MARKER
    yield
    wait_until(lambda: not marked_processes(marker), "MCP servers to be gone", SERVERS_GONE_S)
