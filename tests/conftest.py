import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp_servers.helpers import marked_processes, wait_until

#: Feature folders whose tests start real ``hermes-core`` processes, MCP servers or ngircd:
#: the ``slow`` tier. ``pytest -m "not slow" -n 2`` is the inner loop.
SLOW_FOLDERS = frozenset({"cli", "mcp_pool", "processes"})
SLOW_FILES = frozenset({"test_console.py", "test_bench.py"})
#: Elsewhere, a test that starts a process (itself or through a fixture) is slow too.
STARTS_A_PROCESS = ("subprocess", "hermes_core(", "hermes_run_process", "start_hermes_core")


def _starts_a_process(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    if function is None:
        return False
    fixtures = getattr(item, "fixturenames", ())
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    sources = [function, *(d[-1].func for name in fixtures if (d := defs.get(name)))]
    for source in sources:
        try:
            text = inspect.getsource(source)
        except (OSError, TypeError):
            continue
        if any(marker in text for marker in STARTS_A_PROCESS):
            return True
    return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        slow_place = path.parent.name in SLOW_FOLDERS or path.name in SLOW_FILES
        if slow_place or _starts_a_process(item):
            item.add_marker(pytest.mark.slow)


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
