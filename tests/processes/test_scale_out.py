"""Three ``hermes-core run`` processes on one PostgreSQL database, with messages of 50 sessions
sent to them at random: nothing acknowledged is lost, every request carries the complete
history, and no two runs of a session overlap; also while one process is killed -9 mid-run."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from helpers_scale import GatewayProcess, write_settings
from mcp_servers.helpers import eventually

from hermes_core.pg_store import KEEPALIVE_BOUND_S, PostgresStore
from hermes_core.testing import FakeOpenAI, RecordedRequest
from hermes_core.testing.postgres import free_port

SESSIONS = 50
MESSAGES = 6
#: Each gateway's upstream key: which process sent a request the scripted server recorded.
KEYS = ("sk-gateway-0", "sk-gateway-1", "sk-gateway-2")


@dataclass
class Ack:
    """An acknowledged reply: 200 with the run's answer."""

    session: str
    text: str
    reply: str
    at: float


@dataclass
class Load:
    """Sends each session's messages, two at a time, each to a random live gateway."""

    gateways: list[GatewayProcess]
    http: httpx2.AsyncClient
    prefix: str
    acks: list[Ack] = field(default_factory=list)
    #: (session, text, gateway index, when the connection broke) of requests lost with a kill.
    broken: list[tuple[str, str, int, float]] = field(default_factory=list)
    down: set[int] = field(default_factory=set)
    rng: random.Random = field(default_factory=lambda: random.Random(16))

    async def send(self, session: str, text: str) -> None:
        """Send until acknowledged: a message whose gateway died goes to another."""
        while True:
            index = self.rng.choice([i for i in range(len(self.gateways)) if i not in self.down])
            body = {"model": "any", "messages": [{"role": "user", "content": text}]}
            try:
                response = await self.http.post(
                    f"{self.gateways[index].url}/v1/chat/completions",
                    json=body,
                    headers={"X-Hermes-Session": session},
                )
            except httpx2.TransportError:
                self.broken.append((session, text, index, time.time()))
                continue
            assert response.status_code == 200, response.text
            reply = response.json()["choices"][0]["message"]["content"]
            self.acks.append(Ack(session, text, reply, time.time()))
            return

    async def session(self, number: int) -> None:
        session = f"{self.prefix}{number:02}"
        for pair in range(0, MESSAGES, 2):
            await asyncio.gather(*(self.send(session, f"{session} m{m}") for m in (pair, pair + 1)))

    async def run(self) -> None:
        await asyncio.gather(*(self.session(n) for n in range(SESSIONS)))


@contextlib.asynccontextmanager
async def gateways_under_load(
    tmp_path: Path, fake_openai: FakeOpenAI, database_url: str, prefix: str
) -> AsyncIterator[Load]:
    """Three started gateways on one database and the :class:`Load` for them (its sessions
    named ``prefix``...); once the body has passed, each gateway must stop cleanly (SIGTERM,
    exit 0), and none may have logged a traceback."""
    gateways = []
    for number in range(3):
        port = free_port()
        settings = write_settings(
            tmp_path / f"g{number}.toml", fake_openai.url, database_url, port, api_key=KEYS[number]
        )
        gateways.append(GatewayProcess(settings, f"http://127.0.0.1:{port}"))
    try:
        await asyncio.gather(*(g.start() for g in gateways))
        async with httpx2.AsyncClient(timeout=60) as http:
            yield Load(gateways, http, prefix)
        for gateway in gateways:
            await gateway.stop()
    finally:
        for gateway in gateways:
            await gateway.kill()  # what a failed test left running
    logs = "".join(line for g in gateways for line in g.logs)
    assert "Traceback" not in logs, logs


def requests_of(fake_openai: FakeOpenAI, session: str) -> list[RecordedRequest]:
    """The session's upstream requests in arrival order (its texts start with its name)."""
    found = [r for r in fake_openai.snapshot() if r.messages[-1]["content"].startswith(session)]
    return sorted(found, key=lambda r: r.received_at)


def at_the_model(fake_openai: FakeOpenAI, index: int) -> list[RecordedRequest]:
    """Gateway ``index``'s requests the scripted model has not begun to answer."""
    key = f"Bearer {KEYS[index]}"
    return [
        r
        for r in fake_openai.snapshot()
        if r.answered_at is None and r.headers.get("authorization") == key
    ]


async def freeze_mid_run(gateway: GatewayProcess, fake_openai: FakeOpenAI, index: int) -> None:
    """Freeze ``gateway`` (SIGSTOP) at a moment one of its runs is at the model. A request of
    it still unanswered once it is frozen is one whose run cannot have replied: killing it now
    interrupts that request for sure. (A count of acknowledged replies is no such moment: the
    sessions move in step, and at the end of a pair none of them has a request in flight.)"""
    while True:
        await eventually(
            lambda: bool(at_the_model(fake_openai, index)), f"a run of gateway {index}", 60
        )
        gateway.freeze()
        if at_the_model(fake_openai, index):
            return
        gateway.thaw()  # answered meanwhile: its reply may be on the way


def taken_over(load: Load, fake_openai: FakeOpenAI, index: int, since: float) -> bool:
    """Whether every session whose request to gateway ``index`` broke has reached the model
    again after ``since``."""
    interrupted = {session for session, _, broken_at, _ in load.broken if broken_at == index}
    reached = {
        r.messages[-1]["content"].split()[0]
        for r in fake_openai.snapshot()
        if r.received_at > since
    }
    return bool(interrupted) and interrupted <= reached


@dataclass(frozen=True)
class Kill:
    """Gateway ``index`` was sent SIGKILL at ``began`` and was gone by ``gone`` (UNIX time)."""

    index: int
    began: float
    gone: float

    def left_at_the_model(self, request: RecordedRequest) -> bool:
        """Whether ``request`` was the killed process's, still at the model while it died: its
        answer went to no one, and the session's next run may start before it is sent."""
        sent_by = request.headers.get("authorization") == f"Bearer {KEYS[self.index]}"
        answered_at = request.answered_at or float("inf")
        return sent_by and request.received_at < self.gone and answered_at > self.began


async def check_sessions(
    load: Load, fake_openai: FakeOpenAI, database_url: str, kill: Kill | None = None
) -> None:
    store = PostgresStore(database_url, migrate=False)
    await store.open()
    try:
        for number in range(SESSIONS):
            session = f"{load.prefix}{number:02}"
            lines = await store.transcript(f"http:{session}")
            answered = [line.message for line in lines if line.status == "answered"]
            assistant = [m["content"] for m in answered if m["role"] == "assistant"]
            acks = {a.text: a.reply for a in load.acks if a.session == session}
            assert len(acks) == MESSAGES
            # Every acknowledged reply is stored, once.
            assert all(assistant.count(reply) == 1 for reply in acks.values()), (acks, assistant)
            # In order: each answered run saw the answered turns before it, and the two
            # messages of a pair (sent at once) are stored before the next pair (sent after).
            for position, reply in enumerate(assistant, 1):
                assert reply.endswith(f"(user messages: {position})"), (position, assistant)
            stored_at = [assistant.index(acks[f"{session} m{m}"]) for m in range(MESSAGES)]
            for m in range(2, MESSAGES):
                assert stored_at[m] > max(stored_at[(m // 2) * 2 - 2 : (m // 2) * 2])
            requests = requests_of(fake_openai, session)
            # No two runs of the session were at the model at the same time.
            for before, after in itertools.pairwise(requests):
                assert before.answered_at is not None
                if kill is not None and kill.left_at_the_model(before):
                    continue
                assert after.received_at >= before.answered_at, f"{session}: runs overlapped"
            # Each request carried the complete history: every answered turn before it (a run
            # killed before it was stored is not one; the replies above show none is missing).
            users = [m["content"] for m in answered if m["role"] == "user"]
            for request in requests:
                *history, _ = [m["content"] for m in request.messages if m["role"] == "user"]
                assert history == users[: len(history)], f"{session}: {history} is not {users}"
    finally:
        await store.close()


async def test_three_processes_serve_50_sessions_without_loss_overlap_or_stale_history(
    tmp_path: Path, fake_openai: FakeOpenAI, postgres_url: str
) -> None:
    async with gateways_under_load(tmp_path, fake_openai, postgres_url, "calm") as load:
        await load.run()
        assert len(load.acks) == SESSIONS * MESSAGES and not load.broken
        await check_sessions(load, fake_openai, postgres_url)


async def test_killing_a_process_mid_run_loses_nothing_acknowledged_and_frees_its_sessions(
    tmp_path: Path, fake_openai: FakeOpenAI, postgres_url: str
) -> None:
    async with gateways_under_load(tmp_path, fake_openai, postgres_url, "kill") as load:
        gateways = load.gateways
        traffic = asyncio.create_task(load.run())
        # Well into the load, then at a moment the process to kill is mid-run.
        await eventually(lambda: len(load.acks) >= SESSIONS * MESSAGES // 3, "the load", 60)
        await freeze_mid_run(gateways[0], fake_openai, 0)
        load.down.add(0)
        killed_at = time.time()
        await gateways[0].kill()
        dead = Kill(0, killed_at, time.time())
        # The others serve its sessions meanwhile (how fast is measured below).
        await eventually(
            lambda: taken_over(load, fake_openai, 0, killed_at),
            "the others to serve the killed process's sessions",
            KEEPALIVE_BOUND_S,
        )
        await gateways[0].restart_elsewhere()

        load.down.discard(0)
        await asyncio.wait_for(traffic, 120)

        assert load.broken, "the kill interrupted no request"
        await check_sessions(load, fake_openai, postgres_url, dead)
        # The sessions the dead process held are served again by the others, at once: the
        # first upstream request of each after the kill, relative to the kill.
        interrupted = {session for session, _, index, _ in load.broken if index == 0}
        hand_overs = [
            min(r.received_at for r in requests_of(fake_openai, s) if r.received_at > killed_at)
            - killed_at
            for s in interrupted
        ]
        hand_overs.sort()
        median = hand_overs[len(hand_overs) // 2]
        print(
            f"\nlock hand-over after kill -9 ({len(hand_overs)} interrupted sessions): "
            f"min {hand_overs[0] * 1000:.0f} ms, median {median * 1000:.0f} ms, "
            f"max {hand_overs[-1] * 1000:.0f} ms"
        )
        assert max(hand_overs) < KEEPALIVE_BOUND_S


async def test_lock_hand_over_after_kill_9_mid_run(
    tmp_path: Path, fake_openai: FakeOpenAI, postgres_url: str
) -> None:
    port = free_port()
    settings = write_settings(tmp_path / "g.toml", fake_openai.url, postgres_url, port)
    gateway = GatewayProcess(settings, f"http://127.0.0.1:{port}")
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        await gateway.start()
        async with httpx2.AsyncClient(timeout=60) as http:

            async def post(text: str) -> httpx2.Response:
                body = {"model": "any", "messages": [{"role": "user", "content": text}]}
                return await http.post(
                    f"{gateway.url}/v1/chat/completions",
                    json=body,
                    headers={"X-Hermes-Session": "handover"},
                )

            assert (await post("/model local:hang-primary")).status_code == 200
            run = asyncio.create_task(post("handover m0"))  # holds the lock until killed
            while not fake_openai.requests_for("hang"):
                await asyncio.sleep(0.01)
            waiter = asyncio.create_task(_hold_once(store, "http:handover"))
            await asyncio.sleep(0.5)
            assert not waiter.done()  # the run holds the session
            killed_at = time.monotonic()
            await gateway.kill()
            stored = await asyncio.wait_for(waiter, KEEPALIVE_BOUND_S)
            hand_over_ms = (time.monotonic() - killed_at) * 1000
            print(f"\nrun lock granted {hand_over_ms:.0f} ms after kill -9 of its holder")
            with contextlib.suppress(httpx2.TransportError):
                await run
        assert stored is not None  # the session row (the /model choice) is there
        lines = await store.transcript("http:handover")
        assert [(line.message["content"], line.status) for line in lines] == [
            ("handover m0", "pending")
        ]
    finally:
        await gateway.kill()
        await store.close()


async def _hold_once(store: PostgresStore, key: str) -> int | None:
    async with store.hold(key) as stored:
        return stored
