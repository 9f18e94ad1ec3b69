"""Slash commands: the five built-ins, and plugins adding or replacing commands."""

from __future__ import annotations

import pytest

from hermes_core import hookimpl
from hermes_core.commands import CommandContext, RegisterCommand
from hermes_core.testing import FakeOpenAI, HookRecorder, send, settings_for

BUILTINS = ("/reset", "/new", "/model", "/status", "/prompt", "/help")


async def test_help_lists_every_command(make_gateway) -> None:
    gateway = await make_gateway()
    reply = await send(gateway, "/help")
    listed = [line.split(" ", 1)[0] for line in reply.text.splitlines()]
    assert sorted(listed) == sorted(BUILTINS)
    assert all(" - " in line for line in reply.text.splitlines()), "each command has help"


async def test_commands_never_reach_the_llm_or_run_hooks(
    make_gateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    gateway = await make_gateway()
    for command in BUILTINS:
        reply = await send(gateway, command)
        assert reply.command == command and reply.result is None
    assert fake_openai.snapshot() == []
    assert hook_recorder.of("pre_run") == [] and hook_recorder.of("post_run") == []


async def test_status_shows_model_and_failure_count(make_gateway, fake_openai: FakeOpenAI) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-x", ["bad-y"]))
    status = (await send(gateway, "/status")).text
    assert "local:bad-x, local:bad-y" in status
    assert "Consecutive hard failures: 0" in status

    await send(gateway, "hello")
    await send(gateway, "hello")
    status = (await send(gateway, "/status")).text
    assert "Consecutive hard failures: 2" in status
    assert "test:1" in status


async def test_model_shows_and_switches_per_session(
    make_gateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "ok-a", ["ok-b"]))
    assert "local:ok-a, local:ok-b" in (await send(gateway, "/model")).text

    await send(gateway, "hi")
    reply = await send(gateway, "/model local:ok-c")
    assert "local:ok-c" in reply.text
    assert [e["reason"] for e in hook_recorder.of("on_evict")] == ["model_changed"]
    assert "local:ok-c, local:ok-b" in (await send(gateway, "/model")).text

    # The choice persists for this session, and only this one; history carries over.
    assert (await send(gateway, "again")).text == "[ok-c] again (user messages: 2)"
    assert (await send(gateway, "hi", "test:other")).text.startswith("[ok-a] hi")


@pytest.mark.parametrize(
    ("argument", "expected"),
    [("no-colon", "<provider>:<model>"), ("elsewhere:gpt", "Unknown provider 'elsewhere'")],
)
async def test_model_rejects_bad_input_and_changes_nothing(
    make_gateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder, argument, expected
) -> None:
    gateway = await make_gateway()
    await send(gateway, "hi")
    reply = await send(gateway, f"/model {argument}")
    assert expected in reply.text
    assert "test:1" in gateway.cache and hook_recorder.of("on_evict") == []
    assert (await send(gateway, "again")).text == "[ok-primary] again (user messages: 2)"


@pytest.mark.parametrize("command", ["/reset", "/new"])
async def test_reset_and_new_start_a_fresh_history(
    make_gateway, hook_recorder: HookRecorder, command: str
) -> None:
    gateway = await make_gateway()
    await send(gateway, "one")
    assert (await send(gateway, "two")).text.endswith("(user messages: 2)")
    await send(gateway, command)
    assert [e["reason"] for e in hook_recorder.of("on_evict")] == ["reset"]
    assert (await send(gateway, "three")).text == "[ok-primary] three (user messages: 1)"


async def test_commands_are_case_insensitive_and_take_arguments(make_gateway) -> None:
    gateway = await make_gateway()
    reply = await send(gateway, "  /MODEL   local:ok-z  ")
    assert "local:ok-z" in reply.text
    assert (await send(gateway, "hi")).text.startswith("[ok-z]")


async def test_a_plugin_adds_a_command_and_replaces_a_builtin(
    make_gateway, fake_openai: FakeOpenAI, register_plugin
) -> None:
    class Extra:
        @hookimpl
        def register_commands(self, register: RegisterCommand) -> None:
            register("/echo", self.echo, "repeat the arguments")
            register("/status", self.status, "a terser status")

        def echo(self, ctx: CommandContext) -> str:
            return f"echo: {ctx.args}"

        async def status(self, ctx: CommandContext) -> str:
            return f"custom status of {ctx.session.key}"

    register_plugin(Extra())
    gateway = await make_gateway()
    assert (await send(gateway, "/echo hello world")).text == "echo: hello world"
    assert (await send(gateway, "/status")).text == "custom status of test:1"
    help_text = (await send(gateway, "/help")).text
    assert "/echo - repeat the arguments" in help_text
    assert "/status - a terser status" in help_text
    assert fake_openai.snapshot() == []


async def test_a_failing_command_replies_instead_of_raising(make_gateway, register_plugin) -> None:
    class Broken:
        @hookimpl
        def register_commands(self, register: RegisterCommand) -> None:
            register("/broken", self.broken, "always fails")

        def broken(self, ctx: CommandContext) -> str:
            raise RuntimeError("command bug")

    register_plugin(Broken())
    gateway = await make_gateway()
    reply = await send(gateway, "/broken")
    assert "/broken" in reply.text and "failed" in reply.text


async def test_a_stored_model_choice_of_a_removed_provider_is_ignored(
    make_gateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway()
    # A session stored while another provider was configured (the settings changed since).
    session = await gateway.session("test:1", "test")
    session.model = "retired:some-model"
    reply = await send(gateway, "hello")
    assert reply.text == "[ok-primary] hello (user messages: 1)"
    assert "local:ok-primary" in (await send(gateway, "/model")).text
