"""``hermes-core demo``: the whole stack against the embedded scripted LLM server.

Three sessions show the behaviour hermes-core is built around: a normal chat; a primary that
fails with a working fallback (the agent is evicted, the next message tries the primary
again); and a primary and fallback that both fail (the agent is kept, and after three failures
the circuit breaker answers with a ``/reset`` notice instead of calling the LLM).
"""

from __future__ import annotations

from typing import Any, TextIO

from hermes_core import hookimpl
from hermes_core.gateway import Gateway
from hermes_core.manager import PluginHost
from hermes_core.settings import config_from_dict
from hermes_core.testing.openai_server import FakeOpenAI
from hermes_core.types import Message, RunResult, Session


class HookPrinter:
    """A plugin that narrates hook events."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def say(self, text: str) -> None:
        self.out.write(f"    hook {text}\n")

    @hookimpl
    def on_fallback(self, from_model: str, to_model: str, error: str) -> None:
        self.say(f"on_fallback  {from_model} -> {to_model} ({error})")

    @hookimpl
    def post_run(self, result: RunResult) -> None:
        outcome = f"failed ({result['error_kind']})" if result["failed"] else "ok"
        self.say(
            f"post_run     {outcome}, model={result['model']}, "
            f"fallback_used={result['fallback_used']}, api_calls={result['api_calls']}"
        )

    @hookimpl
    def on_evict(self, session_key: str, reason: str) -> None:
        self.say(f"on_evict     {session_key} ({reason})")

    @hookimpl
    def pre_run(self, session: Session) -> None:
        self.say(f"pre_run      {session.key}")


SCENARIOS: tuple[tuple[str, str, list[str], list[str]], ...] = (
    ("A normal chat", "ok-primary", [], ["Hello!", "What did I just say?"]),
    (
        "Primary fails (HTTP 400), fallback answers: agent evicted, primary retried next",
        "bad-primary",
        ["ok-fallback"],
        ["Hello?", "Still there?"],
    ),
    (
        "Primary and fallback both fail: agent kept, breaker opens at 3, /reset clears it",
        "bad-primary",
        ["bad-fallback"],
        ["one", "two", "three", "four", "/reset"],
    ),
)


async def run_demo(out: TextIO) -> None:
    """Run every scenario against a fresh scripted server, narrating to ``out``."""
    with FakeOpenAI() as server:
        for number, (title, model, fallbacks, texts) in enumerate(SCENARIOS, start=1):
            out.write(f"\n== {number}. {title}\n")
            out.write(f"   agent.model=local:{model} fallbacks={fallbacks}\n")
            await _scenario(server, out, model, fallbacks, texts, f"demo:{number}")
        out.write(f"\nThe scripted server received {len(server.requests)} requests in all.\n")


async def _scenario(
    server: FakeOpenAI,
    out: TextIO,
    model: str,
    fallbacks: list[str],
    texts: list[str],
    session_key: str,
) -> None:
    settings: dict[str, Any] = {
        "agent": {
            "model": f"local:{model}",
            "fallbacks": [f"local:{name}" for name in fallbacks],
        },
        "providers": {"local": {"base_url": server.url, "max_retries": 0}},
        "store": {"path": ":memory:"},  # every demo starts from empty sessions
    }
    host = PluginHost()
    host.load(entry_points=False)
    host.register(HookPrinter(out), "demo-printer")
    async with Gateway(config_from_dict(settings), host) as gateway:
        agent_ids: list[str] = []
        for text in texts:
            before = len(server.requests)
            out.write(f"  user> {text}\n")
            reply = await gateway.handle(
                Message(text=text, platform="demo", session_key=session_key, user_id="demo")
            )
            asked = [request.model for request in server.requests[before:]]
            out.write(f"    LLM requests: {', '.join(asked) if asked else 'none'}\n")
            out.write(f"  agent> {reply.text}\n")
            agent = gateway.cache.get(session_key)
            agent_ids.append(agent.id if agent else "-")
        out.write(f"  cached agent after each message: {' '.join(agent_ids)}\n")
