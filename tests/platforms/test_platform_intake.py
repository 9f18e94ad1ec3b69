"""The adapter helpers in ``hermes_core.platforms``: typed settings and the Intake, driven
through a real gateway and the scripted OpenAI server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hermes_core.errors import ConfigError
from hermes_core.events import RunEvent, RunFinished, TextDelta
from hermes_core.gateway import Gateway
from hermes_core.platforms import REFUSAL, Intake, IntakeClosed, PlatformSettings, Refusal
from hermes_core.testing import FakeOpenAI, settings_for
from hermes_core.types import Message, Reply


def msg(text: str, session: str = "t:1", user: str = "alice") -> Message:
    return Message(text=text, platform="t", session_key=session, user_id=user)


def intake_for(gateway: Gateway, **table: Any) -> Intake:
    return Intake(gateway, PlatformSettings("t", table), typing_after_s=0.05, typing_every_s=0.05)


async def slow_gateway(make_gateway: Any, fake_openai: FakeOpenAI, seconds: int = 1) -> Gateway:
    gateway: Gateway = await make_gateway(settings_for(fake_openai.url, f"slow-{seconds}-m"))
    return gateway


# --- PlatformSettings --------------------------------------------------------------------------


def test_platform_settings_return_values_and_defaults() -> None:
    table = PlatformSettings("x", {"host": "h", "port": 1, "ratio": 2, "on": True, "ids": ["a"]})
    assert table.string("host", "d") == "h"
    assert table.string("missing", "d") == "d"
    assert table.integer("port", 0, minimum=0, maximum=9) == 1
    assert table.number("ratio", 0.5) == 2.0
    assert table.boolean("on", False) is True
    assert table.strings("ids") == ["a"]
    assert table.strings("none") == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: t.integer("flag", 0), "platforms.x.flag: expected an integer, got True"),
        (lambda t: t.integer("port", 0, maximum=10), "platforms.x.port: must be <= 10, got 99"),
        (lambda t: t.string("port", ""), "platforms.x.port: expected a string, got 99"),
        (lambda t: t.boolean("name", False), "platforms.x.name: expected a boolean, got 'n'"),
        (lambda t: t.strings("mixed"), "platforms.x.mixed: expected a list of strings, got item 3"),
        (lambda t: t.number("name", 1.0), "platforms.x.name: expected a number, got 'n'"),
    ],
)
def test_platform_settings_name_the_key_when_wrong(call: Any, message: str) -> None:
    table = PlatformSettings("x", {"flag": True, "port": 99, "name": "n", "mixed": ["a", 3]})
    with pytest.raises(ConfigError) as error:
        call(table)
    assert str(error.value) == message


# --- Intake --------------------------------------------------------------------------------------


async def test_allow_list_refuses_without_a_run(make_gateway: Any, fake_openai: FakeOpenAI) -> None:
    intake = intake_for(await make_gateway(), allow_users=["alice"])
    assert intake.allows("alice") and not intake.allows("mallory")
    refused = await intake.handle(msg("hi", user="mallory"))
    assert refused.text == REFUSAL
    assert refused.result is None
    assert fake_openai.requests == []
    answered = await intake.handle(msg("hi"))
    assert answered.text == "[ok-primary] hi (user messages: 1)"


async def test_empty_allow_list_lets_everyone_in(make_gateway: Any) -> None:
    intake = intake_for(await make_gateway())
    assert intake.allows("anyone")


@pytest.mark.slow
async def test_a_cancelled_requester_does_not_cancel_the_run(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    gateway = await slow_gateway(make_gateway, fake_openai)
    intake = intake_for(gateway)
    requester = asyncio.create_task(intake.handle(msg("keep going")))
    while not fake_openai.requests:
        await asyncio.sleep(0.01)
    requester.cancel()
    with pytest.raises(asyncio.CancelledError):
        await requester
    assert intake.in_flight == 1
    await intake.close()
    agent = gateway.cache.get("t:1")
    assert agent is not None
    assert [m["content"] for m in agent.history] == [
        "keep going",
        "[slow-1-m] keep going (user messages: 1)",
    ]


@pytest.mark.slow
async def test_typing_signal_repeats_while_a_run_is_slow_and_stops_after(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    intake = intake_for(await slow_gateway(make_gateway, fake_openai))
    signals: list[float] = []

    async def typing() -> None:
        signals.append(asyncio.get_running_loop().time())

    await intake.handle(msg("slow"), typing)
    count = len(signals)
    assert count >= 3  # after 0.05 s, then every 0.05 s, for a run of about a second
    await asyncio.sleep(0.2)
    assert len(signals) == count, "the typing signal went on after the reply"


async def test_typing_signal_is_not_sent_for_a_quick_reply(make_gateway: Any) -> None:
    gateway = await make_gateway()
    intake = Intake(gateway, PlatformSettings("t", {}), typing_after_s=5, typing_every_s=None)
    calls: list[int] = []

    async def typing() -> None:
        calls.append(1)

    assert (await intake.handle(msg("/help"), typing)).command == "/help"
    assert calls == []


@pytest.mark.slow
async def test_a_failing_typing_signal_does_not_fail_the_run(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    intake = intake_for(await slow_gateway(make_gateway, fake_openai))

    async def typing() -> None:
        raise RuntimeError("typing broke")

    reply = await intake.handle(msg("still fine"), typing)
    assert reply.text == "[slow-1-m] still fine (user messages: 1)"


@pytest.mark.slow
async def test_submit_delivers_replies_of_a_session_in_order(make_gateway: Any) -> None:
    intake = intake_for(await make_gateway())
    delivered: list[str] = []

    async def deliver(reply: Reply) -> None:
        if "first" in reply.text:
            await asyncio.sleep(0.3)  # a slow send must not let the second reply overtake it
        delivered.append(reply.text)

    assert intake.submit(msg("first"), deliver)
    assert intake.submit(msg("/help"), deliver)  # a command: answered without the model
    assert intake.submit(msg("third"), deliver)
    await intake.close()
    assert len(delivered) == 3
    assert delivered[0] == "[ok-primary] first (user messages: 1)"
    assert delivered[1].startswith("/reset")
    assert delivered[2] == "[ok-primary] third (user messages: 2)"


async def test_submit_refuses_users_off_the_allow_list_through_deliver(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    intake = intake_for(await make_gateway(), allow_users=["alice"])
    delivered: list[str] = []

    async def deliver(reply: Reply) -> None:
        delivered.append(reply.text)

    intake.submit(msg("hi", user="mallory"), deliver)
    await intake.close()
    assert delivered == [REFUSAL]
    assert fake_openai.requests == []


async def test_handle_and_submit_refuse_with_the_same_refusal(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """One allow-list check, one reply: a :class:`Refusal` carrying REFUSAL, which the http
    platform turns into its 403 and push platforms deliver as text."""
    intake = intake_for(await make_gateway(), allow_users=["alice"])
    delivered: list[Reply] = []

    async def deliver(reply: Reply) -> None:
        delivered.append(reply)

    handled = await intake.handle(msg("hi", user="mallory"))
    intake.submit(msg("hi", user="mallory"), deliver)
    await intake.close()
    assert handled == delivered[0] == Refusal()
    assert isinstance(handled, Refusal) and isinstance(delivered[0], Refusal)
    assert handled.text == REFUSAL
    assert fake_openai.requests == []


async def test_a_failing_deliver_is_logged_and_later_replies_still_go_out(
    make_gateway: Any,
) -> None:
    intake = intake_for(await make_gateway())
    delivered: list[str] = []

    async def deliver(reply: Reply) -> None:
        if "boom" in reply.text:
            raise ConnectionError("chat went away")
        delivered.append(reply.text)

    intake.submit(msg("boom"), deliver)
    intake.submit(msg("after"), deliver)
    await intake.close()
    assert delivered == ["[ok-primary] after (user messages: 2)"]


@pytest.mark.slow
async def test_close_finishes_runs_in_flight_and_refuses_new_messages(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    intake = intake_for(await slow_gateway(make_gateway, fake_openai))
    delivered: list[str] = []

    async def deliver(reply: Reply) -> None:
        delivered.append(reply.text)

    intake.submit(msg("in flight"), deliver)
    while not fake_openai.requests:
        await asyncio.sleep(0.01)
    closing = asyncio.create_task(intake.close())
    await asyncio.sleep(0)
    assert not intake.accepting
    assert intake.submit(msg("too late"), deliver) is False
    with pytest.raises(IntakeClosed):
        await intake.handle(msg("too late"))
    await closing
    assert delivered == ["[slow-1-m] in flight (user messages: 1)"]
    assert intake.in_flight == 0


async def test_close_cancels_what_outlasts_the_grace_period(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    gateway = await slow_gateway(make_gateway, fake_openai, seconds=5)
    intake = Intake(gateway, PlatformSettings("t", {"stop_grace_s": 0.2}))
    delivered: list[str] = []

    async def deliver(reply: Reply) -> None:
        delivered.append(reply.text)

    intake.submit(msg("never finishes in time"), deliver)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await intake.close()
    assert loop.time() - started < 10
    assert intake.in_flight == 0
    assert delivered == []
    assert gateway.status()["runs_in_flight"] == 0


# --- submit_stream -------------------------------------------------------------------------------


def events_log(log: list[str], name: str) -> Any:
    """A ``DeliverStream`` noting each event (and its delivery's end) in ``log``, in order."""

    async def deliver(events: AsyncIterator[RunEvent]) -> None:
        async for event in events:
            if isinstance(event, TextDelta):
                log.append(f"{name} text {event.text!r}")
            elif isinstance(event, RunFinished):
                log.append(f"{name} done {event.reply.text!r}")

    return deliver


@pytest.mark.slow
async def test_submit_stream_delivers_text_as_it_streams_and_replies_in_session_order(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    intake = intake_for(await make_gateway(settings_for(fake_openai.url, "stream-2-300-m")))
    log: list[str] = []
    assert intake.submit_stream(msg("one"), events_log(log, "first"))
    assert intake.submit_stream(msg("two"), events_log(log, "second"))
    while not log:
        await asyncio.sleep(0.01)
    assert log[0].startswith("first text") and len(log) == 1, "text came before the run ended"
    await intake.close()
    names = [entry.split()[0] for entry in log]
    assert names == ["first"] * 3 + ["second"] * 3
    assert log[2] == "first done '[stream-2-300-m] one (user messages: 1)'"
    assert log[5] == "second done '[stream-2-300-m] two (user messages: 2)'"


async def test_submit_stream_signals_typing_only_until_the_first_text(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """The signal is for a wait with nothing to show; once text streams, it stops."""
    # The first chunk comes after 250 ms, the reply ends after 750 ms.
    intake = intake_for(await make_gateway(settings_for(fake_openai.url, "stream-3-250-m")))
    log: list[str] = []

    async def typing() -> None:
        log.append("typing")

    intake.submit_stream(msg("a"), events_log(log, "a"), typing)
    await intake.close()
    first_text = next(n for n, entry in enumerate(log) if entry.startswith("a text"))
    assert "typing" in log[:first_text]
    assert "typing" not in log[first_text:]
    assert log[-1] == "a done '[stream-3-250-m] a (user messages: 1)'"


async def test_submit_stream_refuses_users_off_the_allow_list_without_a_run(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    intake = intake_for(await make_gateway(), allow_users=["alice"])
    log: list[str] = []
    assert intake.submit_stream(msg("hi", user="mallory"), events_log(log, "m"))
    await intake.close()
    assert log == [f"m done {REFUSAL!r}"]
    assert fake_openai.requests == []
    assert intake.submit_stream(msg("late"), events_log(log, "m")) is False
