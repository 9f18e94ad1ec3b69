"""The repository's one top-level conftest: every suite below it (tests/ and each
contrib package's tests/) runs on the test kit, each test with a user data dir of its own.

pytest accepts ``pytest_plugins`` only in a conftest it loads before collecting, so it lives
here rather than in each suite's conftest: ``pytest``, ``pytest contrib`` and ``pytest .`` all
work.
"""

pytest_plugins = ["hermes_core.testing", "hermes_core.testing.hermetic"]
