pytest_plugins = ["hermes_core.testing", "hermes_core.testing.hermetic"]
