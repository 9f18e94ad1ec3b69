"""MCP servers written for hermes-core's tests (run as subprocesses, never imported by tests)."""
