"""Plugin sources for :func:`hermes_core.testing.write_dist`, broken ones among them."""

from __future__ import annotations

from pathlib import Path

# --- plugin sources ------------------------------------------------------------------------

BROKEN_IMPORT = """
raise RuntimeError("broken on purpose at import")
"""

RAISING_POST_RUN = """
from hermes_core import hookimpl


@hookimpl
def post_run(session):
    secret = "local-value-never-logged"  # a log showing frame variables would print it
    raise RuntimeError("post_run exploded on purpose" + secret[:0])
"""

MISSPELLED_HOOK = """
from hermes_core import hookimpl


@hookimpl
def post_rum(session):
    pass
"""

WRAPPER_HOOK = """
from hermes_core import hookimpl


@hookimpl(hookwrapper=True)
def post_run(session):
    yield
"""

#: Provider type ``plain``, whose ``complete`` takes no ``**params`` (the request's parameters).
NO_PARAMS_PROVIDER = """
from hermes_core import hookimpl
from hermes_core.providers import Completion


class PlainProvider:
    def __init__(self, name, config):
        pass

    async def complete(self, model, messages, tools):
        return Completion(content="plain: " + messages[-1]["content"])

    async def aclose(self):
        pass


@hookimpl
def register_providers(register):
    register("plain", PlainProvider)
"""

#: Writes ``<module>.imported`` next to itself when imported: proof that it was (or was not).
IMPORT_MARKER = """
from pathlib import Path

from hermes_core import hookimpl

Path(__file__).with_suffix(".imported").touch()


@hookimpl
def startup(gateway):
    pass
"""


def imported(site: Path, module: str) -> bool:
    """Whether an :data:`IMPORT_MARKER` plugin in ``site`` has been imported."""
    return (site / f"{module}.imported").exists()
