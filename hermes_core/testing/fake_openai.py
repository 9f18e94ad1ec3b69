"""``python -m hermes_core.testing.fake_openai PORT``: the scripted OpenAI server as a process.

The server itself lives in :mod:`hermes_core.testing.openai_server` (re-exported here), so that
running this module does not import it twice (``hermes_core.testing`` imports the server).
"""

from hermes_core.testing.openai_server import FakeOpenAI, RecordedRequest, main

__all__ = ["FakeOpenAI", "RecordedRequest", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
