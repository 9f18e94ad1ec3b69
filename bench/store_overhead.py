"""What the SQLite store costs per message, against the in-memory store.

Runs the same messages through a real gateway and the in-process scripted OpenAI server twice,
once with :class:`MemoryStore` and once with :class:`SQLiteStore` (WAL, ``synchronous=FULL``),
alternating over several rounds and keeping the median. Two loads, each of short
conversations (the openai client's per-request cost grows with the history sent, which would
drown the store's): one message at a time (the latency a user sees), and many conversations at
once (group commit shares fsyncs between them). It also times the store calls alone, as the
gateway makes them for one message: ``begin_run``, ``finish_run``, ``save_session``.

    .venv/bin/python bench/store_overhead.py [--messages 200] [--per-session 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hermes_core.gateway import Gateway
from hermes_core.manager import PluginHost
from hermes_core.settings import config_from_dict
from hermes_core.sqlite_store import SQLiteStore
from hermes_core.store import FinishedRun, MemoryStore, Store
from hermes_core.testing import FakeOpenAI, message, settings_for
from hermes_core.types import Session

StoreFactory = Callable[[Path], Store]
KINDS: dict[str, StoreFactory] = {
    "memory": lambda _: MemoryStore(),
    "sqlite": lambda directory: SQLiteStore(directory / "sessions.db"),
}


async def through_gateway(
    server: FakeOpenAI, store: Store, sessions: int, per_session: int, concurrent: bool
) -> float:
    """Seconds to serve ``sessions`` conversations of ``per_session`` messages, all at once
    or one after another."""
    host = PluginHost()
    host.load(entry_points=False)
    gateway = Gateway(config_from_dict(settings_for(server.url)), host, store=store)
    await gateway.start()
    try:

        async def converse(number: int) -> None:
            for i in range(per_session):
                reply = await gateway.handle(message(f"message {i}", f"bench:{number}"))
                assert reply.result is not None and not reply.result["failed"], reply.text

        started = time.perf_counter()
        if concurrent:
            await asyncio.gather(*(converse(n) for n in range(sessions)))
        else:
            for number in range(sessions):
                await converse(number)
        return time.perf_counter() - started
    finally:
        await gateway.stop()
        server.clear()


async def store_calls_alone(directory: Path, count: int) -> float:
    """Seconds for ``count`` messages' worth of SQLite store calls, one after another."""
    store = SQLiteStore(directory / "alone.db")
    await store.open()
    session = Session(key="bench:alone", platform="bench")
    try:
        started = time.perf_counter()
        for i in range(count):
            run_id = f"run-{i}"
            user = {"role": "user", "content": f"message {i}"}
            await store.begin_run(session, run_id, user)
            await store.finish_run(
                session,
                FinishedRun(run_id, [{"role": "assistant", "content": "answer"}], "local:ok"),
            )
            await store.save_session(session)
        return time.perf_counter() - started
    finally:
        await store.close()


async def compare(
    server: FakeOpenAI, sessions: int, per_session: int, concurrent: bool, rounds: int
) -> dict[str, float]:
    """Median seconds per message for each store kind, rounds alternating between kinds."""
    timings: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for _ in range(rounds):
        for kind, factory in KINDS.items():
            with tempfile.TemporaryDirectory() as directory:
                seconds = await through_gateway(
                    server, factory(Path(directory)), sessions, per_session, concurrent
                )
            timings[kind].append(seconds / (sessions * per_session))
    return {kind: statistics.median(values) for kind, values in timings.items()}


def report(title: str, per_message: dict[str, float]) -> None:
    memory, sqlite = per_message["memory"], per_message["sqlite"]
    overhead = sqlite - memory
    print(f"\n{title}")
    print(f"  MemoryStore   {memory * 1000:8.3f} ms/message")
    print(f"  SQLiteStore   {sqlite * 1000:8.3f} ms/message")
    print(f"  overhead      {overhead * 1000:8.3f} ms/message ({overhead / memory:+.1%})")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200, help="messages per load")
    parser.add_argument("--per-session", type=int, default=5, help="messages per conversation")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per store (median)")
    args = parser.parse_args()
    per_session = args.per_session
    sessions = max(args.messages // per_session, 1)

    print(
        f"{sessions * per_session} messages per load ({sessions} conversations x {per_session}), "
        f"median of {args.rounds} rounds"
    )
    with FakeOpenAI() as server:
        report(
            "One message at a time:",
            await compare(server, sessions, per_session, False, args.rounds),
        )
        report(
            f"All {sessions} conversations at once:",
            await compare(server, sessions, per_session, True, args.rounds),
        )
    with tempfile.TemporaryDirectory() as directory:
        seconds = await store_calls_alone(Path(directory), args.messages)
    print(
        "\nSQLite store calls alone (begin_run + finish_run + save_session, sequential): "
        f"{seconds / args.messages * 1000:.3f} ms/message"
    )


if __name__ == "__main__":
    asyncio.run(main())
