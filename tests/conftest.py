pytest_plugins = ["hermes_core.testing"]
