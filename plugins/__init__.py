"""The built-in plugins: ordinary plugins, registered under short names (see DEFAULT_PLUGINS)."""
