import inspect
from pathlib import Path

import pytest

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
