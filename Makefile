PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup servers demo test lint typecheck docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(STAMP) servers

# Real servers and tools the tests run against: ngircd for the IRC adapter, wrk for the load
# benchmark (bench/http_load.py), haproxy for the deployment page's test, PostgreSQL for the PostgreSQL store (a throw-away cluster per
# test session, see hermes_core/testing/postgres.py); the tests that need them skip without them.
servers:
	@command -v ngircd >/dev/null || [ -x /usr/sbin/ngircd ] || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ngircd >/dev/null; } || \
	  echo "note: ngircd is not installed (apt-get install ngircd); the IRC tests will be skipped"
	@command -v wrk >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } || \
	  echo "note: wrk is not installed (apt-get install wrk); the load benchmark will be skipped"
	@[ -x "$$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -n 1)" ] || command -v initdb >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || \
	  echo "note: PostgreSQL is not installed (apt-get install postgresql); the PostgreSQL store tests will be skipped"
	@command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; } || \
	  echo "note: haproxy is not installed (apt-get install haproxy); its deployment test will be skipped"

demo: setup
	$(BIN)/hermes-core demo

test: setup
	$(BIN)/pytest

lint: setup typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow the package-dir mapping (hookspecs/ -> hermes_core.hookspecs) of an
# editable install, so it checks the package exactly as pip installs it.
typecheck: setup
	rm -rf build/typecheck
	$(BIN)/pip install --quiet --no-deps --target build/typecheck .
	cd build/typecheck && ../../$(BIN)/mypy --strict hermes_core
	cd build/typecheck && MYPYPATH=../../contrib/hermes-irc ../../$(BIN)/mypy --strict -p hermes_irc
	cd build/typecheck && MYPYPATH=../../contrib/hermes-health-webhook ../../$(BIN)/mypy --strict -p hermes_health_webhook

# The documentation site, into build/site; --strict turns every warning (broken link or
# anchor, page missing from the nav) into a failure.
docs: setup
	$(BIN)/mkdocs build --strict

# Benchmarks against local scripted servers (a few minutes); results go in docs/performance.md.
bench: setup
	$(BIN)/python bench/run.py
	$(BIN)/python bench/http_load.py
	$(BIN)/python bench/sse_latency.py

clean:
	rm -rf $(VENV) build *.egg-info
