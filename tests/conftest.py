import pytest

pytest_plugins = ["hermes_core.testing"]


@pytest.fixture(autouse=True)
def _own_data_dir(hermetic_data_dir: object) -> None:
    """Every test of this suite gets its own user data dir (the kit's fixture is opt-in)."""
