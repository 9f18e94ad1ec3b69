"""The documentation is part of the contract: these tests fail when it drifts from the code.

- every hook of ``HermesSpec`` has a ``## <name>`` section in docs/hooks.md and a test function
  ``test_hook_<name>`` somewhere under tests/, and no section documents a hook that does not
  exist;
- every key of the settings schema (core, MCP, platforms and the built-in plugins'
  ``register_settings``) has a row in docs/configuration.md with the type, default and maximum
  the code has, and every row there names a key of the schema;
- every built-in plugin name is in docs/plugins.md, and links between docs/ pages resolve;
- every Python block in docs/ compiles and every TOML block parses; every example plugin in
  docs/hooks.md and docs/plugins.md loads and runs through a real gateway without logging an
  error, the examples that promise a behaviour are checked end to end, and the example suite in
  docs/testing.md passes in a pytest subprocess.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import subprocess
import sys
import tomllib
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from hermes_core import hookimpl
from hermes_core.gateway import Gateway
from hermes_core.hookspecs import PROJECT_NAME, HermesSpec
from hermes_core.manager import DEFAULT_PLUGINS
from hermes_core.mcp import MCPRegistry
from hermes_core.runner import serve
from hermes_core.settings import config_from_dict
from hermes_core.settings.schema import MISSING, Setting
from hermes_core.store import MemoryStore
from hermes_core.testing import FakeOpenAI, send, settings_for

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
TESTS = ROOT / "tests"

HOOKS = sorted(
    name for name, value in vars(HermesSpec).items() if hasattr(value, "hermes_core_spec")
)
FENCE = re.compile(
    r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL
)
#: A level-2 heading that is one lower-case identifier documents a hook; prose headings have spaces.
HOOK_HEADING = re.compile(r"^[a-z][a-z0-9_]*$")


def blocks(path: Path, lang: str) -> list[str]:
    """The fenced code blocks of one language in a Markdown file."""
    return [m["code"] for m in FENCE.finditer(path.read_text()) if m["lang"] == lang]


def level2_headings(path: Path) -> list[str]:
    """``## `` headings outside code blocks."""
    text = FENCE.sub("", path.read_text())
    return [line[3:].strip() for line in text.splitlines() if line.startswith("## ")]


def test_hermes_spec_has_hooks() -> None:
    assert "post_run" in HOOKS and len(HOOKS) >= 13


def test_every_hook_has_a_section_in_hooks_md() -> None:
    documented = [h for h in level2_headings(DOCS / "hooks.md") if HOOK_HEADING.match(h)]
    missing = sorted(set(HOOKS) - set(documented))
    assert not missing, f"docs/hooks.md has no '## <name>' section for: {missing}"
    unknown = sorted(set(documented) - set(HOOKS))
    assert not unknown, f"docs/hooks.md documents hooks HermesSpec does not have: {unknown}"
    duplicated = sorted({h for h in documented if documented.count(h) > 1})
    assert not duplicated, f"docs/hooks.md documents these hooks twice: {duplicated}"


@pytest.mark.slow
def test_every_hook_has_a_test_named_test_hook_name() -> None:
    names: set[str] = set()
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
    assert "test_every_hook_has_a_test_named_test_hook_name" in names  # it sees this file
    missing = sorted(hook for hook in HOOKS if f"test_hook_{hook}" not in names)
    assert not missing, "no test function named " + ", ".join(f"test_hook_{h}" for h in missing)


# --- configuration reference -----------------------------------------------------------------


def default_cell(setting: Setting) -> str | None:
    """The default column a setting must have (None: prose, for keys without a default)."""
    if setting.required is not None:
        return "required"
    return None if setting.default is MISSING else f"`{json.dumps(setting.default)}`"


async def documented_settings(make_gateway: Any) -> list[Setting]:
    """Every setting a user sets: the schema of a configured gateway, less the tables that
    only hold other keys."""
    gateway = await make_gateway()
    holders = {s.key.rsplit(".", 1)[0] for s in gateway.settings_schema.declared()}
    return [
        s
        for s in gateway.settings_schema.declared()
        if s.types != (dict,) or s.open or s.key not in holders
    ]


def documented_rows() -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in (DOCS / "configuration.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and cells[0].endswith("`"):
            rows[cells[0].strip("`")] = cells[1:]
    return rows


async def test_configuration_md_documents_every_key_with_its_type_and_default(
    make_gateway: Any,
) -> None:
    rows = documented_rows()
    problems = []
    settings = await documented_settings(make_gateway)
    for setting in settings:
        cells = rows.get(setting.key)
        if cells is None:
            problems.append(f"{setting.key}: no table row")
            continue
        if cells[0] != setting.type_word:
            problems.append(
                f"{setting.key}: documented type {cells[0]!r}, schema: {setting.type_word!r}"
            )
        default = default_cell(setting)
        if default is not None and cells[1] != default:
            problems.append(
                f"{setting.key}: documented default {cells[1]!r}, the code has {default!r}"
            )
        if setting.maximum is not None and f"{setting.maximum:.0f}" not in cells[2].replace(
            ",", ""
        ):
            problems.append(f"{setting.key}: the maximum {setting.maximum:.0f} is not documented")
    declared = {setting.key for setting in settings}
    problems += [f"{key}: documented, but no such setting" for key in rows if key not in declared]
    assert not problems, "docs/configuration.md is out of date:\n" + "\n".join(problems)


def test_every_builtin_plugin_name_is_in_plugins_md() -> None:
    text = (DOCS / "plugins.md").read_text()
    missing = [name for name, _ in DEFAULT_PLUGINS if f"`{name}`" not in text]
    assert not missing, f"docs/plugins.md does not name the built-in plugins {missing}"


def slug(heading: str) -> str:
    """The anchor GitHub (and mkdocs' toc with ``slugify``) gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_docs_resolve() -> None:
    broken = []
    for path in sorted(DOCS.glob("*.md")):
        for target, anchor in re.findall(
            r"\]\((?!https?:)([^)#\s]*)(?:#([^)\s]+))?\)", FENCE.sub("", path.read_text())
        ):
            linked = (path.parent / target) if target else path
            if not linked.exists():
                broken.append(f"{path.name}: {target} does not exist")
                continue
            if anchor and linked.suffix == ".md":
                text = FENCE.sub("", linked.read_text())
                anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}
                if anchor not in anchors:
                    broken.append(f"{path.name}: {target}#{anchor} has no such heading")
    assert not broken, "broken links in docs/:\n" + "\n".join(broken)


# --- code blocks -----------------------------------------------------------------------------


def test_python_blocks_compile() -> None:
    for path in sorted(DOCS.glob("*.md")):
        for number, code in enumerate(blocks(path, "python")):
            compile(code, f"{path.name} python block {number}", "exec")


def test_toml_blocks_parse() -> None:
    for path in sorted(DOCS.glob("*.md")):
        for number, code in enumerate(blocks(path, "toml")):
            try:
                tomllib.loads(code)
            except tomllib.TOMLDecodeError as error:
                pytest.fail(f"{path.name} toml block {number}: {error}")


def example_plugins() -> list[tuple[str, str]]:
    """(id, code) of every Python block that defines a plugin (uses ``@hookimpl``); the id is
    the file and section, e.g. ``hooks.md#post_run`` (``#post_run-2`` for a second one)."""
    found: list[tuple[str, str]] = []
    for name in ("hooks.md", "plugins.md"):
        text = (DOCS / name).read_text()
        for match in FENCE.finditer(text):
            if match["lang"] != "python" or "@hookimpl" not in match["code"]:
                continue
            headings = re.findall(r"^##+ (.+)$", FENCE.sub("", text[: match.start()]), re.M)
            section = re.sub(r"[^a-z0-9_]+", "-", (headings or ["top"])[-1].lower()).strip("-")
            example_id = f"{name}#{section}"
            taken = sum(1 for i, _ in found if i == example_id or i.startswith(example_id + "-"))
            found.append((f"{example_id}-{taken + 1}" if taken else example_id, match["code"]))
    return found


def load_module(example_id: str, code: str) -> types.ModuleType:
    module = types.ModuleType("docs_example_" + re.sub(r"\W", "_", example_id))
    # Imported modules are in sys.modules; dataclasses (SessionState) look themselves up there.
    sys.modules[module.__name__] = module
    exec(compile(code, example_id, "exec"), module.__dict__)
    return module


def implemented_hooks(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if getattr(value, f"{PROJECT_NAME}_impl", None) is not None
    }


class ExampleHarness:
    """Gives the examples something to act on: a tool (so the tool hooks fire)."""

    @hookimpl
    def register_tools(self, register: Any) -> None:
        register("noop", lambda arguments: "nothing happened", "Does nothing.")


@pytest.fixture
def traced_hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, list[str]]]]:
    """(hook, implementations) for every hook call, from ``HERMES_TRACE_PLUGINS=1``."""
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setenv("HERMES_TRACE_PLUGINS", "1")
    pattern = re.compile(r"hook (\w+) -> \[(.*?)\] in ")

    def sink(message: Any) -> None:
        if match := pattern.search(message.record["message"]):
            calls.append((match[1], [n for n in match[2].split(", ") if n]))

    logger.enable("hermes_core")
    handle = logger.add(sink, level="INFO", filter="hermes_core.hooks")
    yield calls
    logger.remove(handle)
    logger.disable("hermes_core")


EXAMPLES = example_plugins()


@pytest.mark.parametrize(("example_id", "code"), EXAMPLES, ids=[e for e, _ in EXAMPLES])
async def test_example_plugin_runs(
    example_id: str,
    code: str,
    make_gateway: Any,
    register_plugin: Any,
    fake_openai: FakeOpenAI,
    errors_logged: list[str],
    traced_hooks: list[tuple[str, list[str]]],
) -> None:
    module = load_module(example_id, code)
    hooks = implemented_hooks(module)
    assert hooks, f"{example_id} defines no hook implementation"
    if "register_mcp_servers" in hooks:
        # Starting a gateway would start the example's MCP servers (uvx, network): check that
        # every spec it registers is valid instead.
        registry = MCPRegistry()
        module.register_mcp_servers(register=registry.registrar(example_id))
        assert registry.specs
        return

    register_plugin(ExampleHarness(), "harness")
    register_plugin(module, example_id)
    # One run that makes every run hook fire: a missing primary (on_fallback, and its 404
    # opens its breaker: on_health_change), a fallback that calls a tool (pre/post_tool_call),
    # post_run, then on_evict and shutdown at the stop.
    gateway = await make_gateway(settings_for(fake_openai.url, "notfound-primary", ["tool-model"]))
    commands = gateway.commands.commands.values()
    extra_commands = [c.name for c in commands if c.handler.__module__ == module.__name__]
    reply = await send(gateway, "hello")
    for name in extra_commands:
        await send(gateway, name)
    await gateway.stop()

    assert reply.text, "the example's run gave no reply"
    fired = {hook for hook, plugins in traced_hooks if example_id in plugins}
    assert hooks <= fired, f"hooks of {example_id} never called: {sorted(hooks - fired)}"
    assert not errors_logged, f"{example_id} logged errors:\n" + "\n".join(errors_logged)


def test_every_hook_has_an_example_plugin() -> None:
    covered: set[str] = set()
    for example_id, code in EXAMPLES:
        covered |= implemented_hooks(load_module(example_id, code))
    assert covered >= set(HOOKS), f"hooks without an example plugin: {set(HOOKS) - covered}"


def test_evict_always_recipe_quotes_the_contrib_plugin() -> None:
    """plugins.md shows contrib/hermes-evict-always's code and entry point; they must match."""
    contrib = ROOT / "contrib" / "hermes-evict-always"
    source = (contrib / "hermes_evict_always" / "__init__.py").read_text()
    [quoted] = [c for i, c in EXAMPLES if i.startswith("plugins.md") and '"evict_always"' in c]
    missing = [line for line in quoted.splitlines() if line.strip() and line not in source]
    assert not missing, f"plugins.md quotes lines the contrib plugin does not have: {missing}"
    [entry_point] = [c for c in blocks(DOCS / "plugins.md", "toml") if "evict_always =" in c]
    pyproject = tomllib.loads((contrib / "pyproject.toml").read_text())
    assert (
        tomllib.loads(entry_point)["project"]["entry-points"]
        == pyproject["project"]["entry-points"]
    )


# --- examples whose promised behaviour is cheap to check end to end --------------------------


def example(marker: str) -> types.ModuleType:
    """The one example plugin whose code contains ``marker``, loaded as a module."""
    [(example_id, code)] = [(i, c) for i, c in EXAMPLES if marker in c]
    return load_module(example_id, code)


async def test_batch_platform_example_answers_a_file(
    tmp_path: Path, register_plugin: Any, plugin_host: Any, fake_openai: FakeOpenAI
) -> None:
    register_plugin(example('register("batch"'), "hermes_batch")
    questions, answers = tmp_path / "questions.txt", tmp_path / "answers.txt"
    questions.write_text("one\ntwo\n")
    table = {"enabled": True, "input": str(questions), "output": str(answers)}
    settings = settings_for(fake_openai.url, platforms={"batch": table})
    gateway = Gateway(config_from_dict(settings), plugin_host, store=MemoryStore())
    assert await asyncio.wait_for(serve(gateway), 30) == 0  # closes by itself when done
    assert answers.read_text() == (
        "[ok-primary] one (user messages: 1)\n[ok-primary] two (user messages: 1)\n"
    )


async def test_echo_provider_example_answers_and_fails_over(
    make_gateway: Any, register_plugin: Any, fake_openai: FakeOpenAI
) -> None:
    register_plugin(example('register("echo"'), "hermes_echo")
    settings = settings_for(fake_openai.url)
    settings["agent"] = {"model": "offline:anything", "fallbacks": []}
    settings["providers"]["offline"] = {"type": "echo", "prefix": "you said:"}
    assert (await send(await make_gateway(settings), "hi")).text == "you said: hi"
    settings["agent"] = {"model": "offline:fail", "fallbacks": ["local:ok-fallback"]}
    reply = await send(await make_gateway(settings), "hi", "test:2")
    assert reply.result is not None and reply.result["fallback_used"]
    assert reply.text == "[ok-fallback] hi (user messages: 1)"


async def test_quota_example_short_circuits_after_the_limit(
    make_gateway: Any, register_plugin: Any, fake_openai: FakeOpenAI
) -> None:
    register_plugin(example('SessionState("quota"'), "hermes_quota")
    gateway = await make_gateway(settings_for(fake_openai.url, quota={"per_session": 1}))
    assert (await send(gateway, "one")).text == "[ok-primary] one (user messages: 1)"
    assert (await send(gateway, "two")).text.startswith("This conversation reached its 1 mess")
    assert len(fake_openai.requests) == 1
    await send(gateway, "/new")  # clears session.data, and so the count
    assert (await send(gateway, "three")).text == "[ok-primary] three (user messages: 1)"


async def test_proxy_provider_example_sends_its_headers(
    make_gateway: Any, register_plugin: Any, fake_openai: FakeOpenAI, monkeypatch: Any
) -> None:
    register_plugin(example('register("proxy"'), "hermes_proxy")
    monkeypatch.setenv("CORP_PROXY_KEY", "k-123")
    settings = settings_for(fake_openai.url)
    settings["agent"] = {"model": "corp:ok-proxied", "fallbacks": []}
    settings["providers"]["corp"] = {
        "type": "proxy",
        "base_url": fake_openai.url,
        "api_key_env": "CORP_PROXY_KEY",
        "tenant": "research",
    }
    assert (await send(await make_gateway(settings), "hi")).text == (
        "[ok-proxied] hi (user messages: 1)"
    )
    headers = fake_openai.requests[0].headers
    assert (headers["x-proxy-key"], headers["x-tenant"]) == ("k-123", "research")


async def test_units_example_tool_and_command(
    make_gateway: Any, register_plugin: Any, fake_openai: FakeOpenAI
) -> None:
    register_plugin(example("convert_units"), "hermes_units")
    gateway = await make_gateway(settings_for(fake_openai.url, "tool-model"))
    reply = await send(gateway, 'call convert_units {"value": 10, "from": "km", "to": "mi"}')
    assert reply.text == "tool results: 6.214 mi"
    assert (await send(gateway, "/usage")).text == "1 run(s), 2 LLM request(s), 1 tool call(s)"


def test_testing_md_example_suite_passes(tmp_path: Path) -> None:
    """The conftest and test a plugin author copies from testing.md pass as they stand."""
    python = blocks(DOCS / "testing.md", "python")
    [conftest] = [code for code in python if code.startswith("pytest_plugins")]
    [tests] = [code for code in python if "async def test_" in code]
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_example.py").write_text(tests)
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


def test_testing_md_pytest_collects_contrib_as_a_folder() -> None:
    """`pytest contrib` runs every contrib package's tests, as testing.md says: the kit is
    opted in where pytest accepts it, not in a conftest it meets while collecting."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "contrib",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    packages = {line.split("/")[1] for line in run.stdout.splitlines() if "::" in line}
    assert packages == {suite.parent.name for suite in (ROOT / "contrib").glob("*/tests")}


def test_testing_md_standalone_server_example_runs() -> None:
    [code] = [c for c in blocks(DOCS / "testing.md", "python") if "with FakeOpenAI()" in c]
    exec(compile(code, "testing.md", "exec"), {})
