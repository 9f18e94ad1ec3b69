"""The contrib IRC adapter (``contrib/hermes-irc``) against a real IRC server.

Each test that needs a server starts its own ``ngircd`` on a free loopback port and talks to it
through a plain IRC client over a socket. The end-to-end test runs ``hermes-core run`` with the
adapter pip-installed into a temporary directory and found through its entry point.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from hermes_core.errors import ConfigError
from hermes_core.platforms import REFUSAL
from hermes_core.testing import FakeOpenAI, cli_env, hermes_run_process, pip_install, settings_for
from hermes_core.testing import script as fake_script
from hermes_core.testing.outcomes import Answer, RecordedRequest

IRC_SOURCE = Path(__file__).resolve().parents[1]
NGIRCD = shutil.which("ngircd") or next(
    (p for p in ("/usr/sbin/ngircd", "/usr/local/sbin/ngircd") if os.access(p, os.X_OK)), None
)
needs_ngircd = pytest.mark.skipif(
    NGIRCD is None,
    reason="ngircd is not installed and could not be (make setup runs apt-get install ngircd)",
)
BOT = "hermesbot"
CHANNEL = "#hermes"
TIMEOUT_S = 30

NGIRCD_CONFIG = """
[Global]
Name = irc.hermes.test
Info = hermes-core test server
AdminInfo1 = hermes-core tests
AdminInfo2 = localhost
AdminEMail = tests@localhost
Listen = 127.0.0.1
Ports = {port}
MotdPhrase = hermes-core test server

[Limits]
MaxNickLength = 30
MaxConnectionsIP = 0
PingTimeout = 300
# No flood penalties: tests send bursts, and each penalty second would slow them down.
MaxPenaltyTime = 0

[Options]
PAM = no
Ident = no
DNS = no
IncludeDir = {include_dir}
"""


# --- a real IRC server ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


@dataclass
class IrcServer:
    """A running ngircd."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_ngircd(directory: Path, port: int | None = None) -> IrcServer:
    """Start ngircd (in the foreground, no other servers) on ``port`` or a free one."""
    assert NGIRCD is not None
    include_dir = directory / "conf.d"
    include_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # a free port can be taken between the check and ngircd's bind
        chosen = port or _free_port()
        config = directory / "ngircd.conf"
        config.write_text(NGIRCD_CONFIG.format(port=chosen, include_dir=include_dir))
        log = directory / f"ngircd-{chosen}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [NGIRCD, "-n", "-p", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = IrcServer(chosen, process, log)
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            if _accepts(chosen):
                return server
            time.sleep(0.05)
        server.stop()
    raise AssertionError(f"ngircd did not start:\n{log.read_text()}")


@pytest.fixture
def ngircd(tmp_path: Path) -> Iterator[IrcServer]:
    if NGIRCD is None:
        pytest.skip("ngircd is not installed")
    server = start_ngircd(tmp_path / "ngircd")
    yield server
    server.stop()


# --- a plain IRC client --------------------------------------------------------------------------

_LINE = re.compile(r"^(?::(?P<prefix>\S+) )?(?P<command>\S+)(?P<params>.*)$")


@dataclass(frozen=True)
class Received:
    raw: str
    nick: str
    command: str
    params: list[str]

    @classmethod
    def parse(cls, raw: str) -> Received:
        match = _LINE.match(raw)
        assert match is not None, raw
        head, _, trailing = match["params"].partition(" :")
        params = head.split() + ([trailing] if " :" in match["params"] else [])
        return cls(raw, (match["prefix"] or "").split("!")[0], match["command"], params)


class IrcClient:
    """A person on IRC: registers, joins, says things and waits for lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.seen: list[Received] = []

    @classmethod
    async def connect(cls, port: int, nick: str) -> IrcClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        client.send(f"NICK {nick}")
        client.send(f"USER {nick} 0 * :{nick}")
        await client.expect(lambda line: line.command == "001")
        return client

    def send(self, line: str) -> None:
        self.writer.write(line.encode() + b"\r\n")

    async def expect(
        self, matches: Callable[[Received], bool], timeout: float = TIMEOUT_S
    ) -> Received:
        """Read until a line ``matches`` (answering PINGs); fail after ``timeout``."""

        async def read() -> Received:
            while True:
                data = await self.reader.readline()
                assert data, "the server closed the connection"
                assert len(data) <= 512, f"an IRC line longer than 512 bytes: {data!r}"
                line = Received.parse(data.decode().rstrip("\r\n"))
                self.seen.append(line)
                if line.command == "PING":
                    self.send(f"PONG :{line.params[-1]}")
                if matches(line):
                    return line

        return await asyncio.wait_for(read(), timeout)

    async def join(self, channel: str, *, wait_for: str | None = None) -> None:
        """Join ``channel``; with ``wait_for``, return once that nick is in it too."""
        self.send(f"JOIN {channel}")
        names = await self.expect(lambda line: line.command == "353")
        present = [name.lstrip("~&@%+") for name in names.params[-1].split()]
        if wait_for is not None and wait_for not in present:
            await self.expect(lambda line: line.command == "JOIN" and line.nick == wait_for)

    async def privmsg_from(self, nick: str, target: str, starting: str = "") -> str:
        """The text of the next PRIVMSG from ``nick`` to ``target`` that starts so."""
        line = await self.expect(
            lambda line: (
                line.command == "PRIVMSG"
                and line.nick == nick
                and line.params[0] == target
                and line.params[-1].startswith(starting)
            )
        )
        return line.params[-1]

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send("QUIT :bye")
            await self.writer.drain()
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@pytest_asyncio.fixture
async def irc_client(ngircd: IrcServer) -> AsyncIterator[Callable[[str], Awaitable[IrcClient]]]:
    """``await irc_client(nick)``: a registered client on ``ngircd``; closed after the test."""
    clients: list[IrcClient] = []

    async def connect(nick: str) -> IrcClient:
        client = await IrcClient.connect(ngircd.port, nick)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.close()


# --- the adapter in-process ----------------------------------------------------------------------


@pytest.fixture
def hermes_irc(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The adapter's modules, imported from the source tree. The tree has no ``.dist-info``,
    so no entry point leaks into other tests."""
    monkeypatch.syspath_prepend(str(IRC_SOURCE))
    import hermes_irc.platform
    import hermes_irc.protocol

    return hermes_irc


@pytest_asyncio.fixture
async def start_bot(
    make_gateway: Any,
    register_plugin: Any,
    fake_openai: FakeOpenAI,
    ngircd: IrcServer,
    hermes_irc: Any,
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await start_bot(model, **platforms_irc)``: a started IrcPlatform on ``ngircd``."""
    bots: list[Any] = []
    # The gateway checks that every enabled platform is installed: register the plugin.
    register_plugin(hermes_irc, "irc")

    async def start(model: str = "ok-primary", **irc: Any) -> Any:
        table = {
            "enabled": True,
            "server": "127.0.0.1",
            "port": ngircd.port,
            "nick": BOT,
            "channels": [CHANNEL],
            "line_delay_s": 0.01,
            **irc,
        }
        gateway = await make_gateway(settings_for(fake_openai.url, model, platforms={"irc": table}))
        bot = hermes_irc.platform.IrcPlatform(gateway, table)
        await bot.start()
        bots.append(bot)
        return bot

    yield start
    for bot in bots:
        await bot.stop()


@needs_ngircd
async def test_answers_when_addressed_in_a_channel_and_in_private(
    start_bot: Any, irc_client: Any, fake_openai: FakeOpenAI
) -> None:
    bot = await start_bot()
    assert CHANNEL in bot.channels
    alice = await irc_client("alice")
    await alice.join(CHANNEL, wait_for=BOT)

    alice.send(f"PRIVMSG {CHANNEL} :just chatting, not to the bot")
    alice.send(f"PRIVMSG {CHANNEL} :{BOT}: what is up?")
    assert await alice.privmsg_from(BOT, CHANNEL) == (
        "alice: [ok-primary] what is up? (user messages: 1)"
    )
    alice.send(f"PRIVMSG {BOT} :a private word")
    assert (
        await alice.privmsg_from(BOT, "alice") == "[ok-primary] a private word (user messages: 1)"
    )
    alice.send(f"PRIVMSG {CHANNEL} :{BOT.upper()}, and again")
    assert await alice.privmsg_from(BOT, CHANNEL) == (
        "alice: [ok-primary] and again (user messages: 2)"
    )
    asked = [r.messages[-1]["content"] for r in fake_openai.requests]
    assert asked == ["what is up?", "a private word", "and again"]


@needs_ngircd
async def test_each_nick_in_a_channel_has_its_own_session(start_bot: Any, irc_client: Any) -> None:
    bot = await start_bot()
    alice, bob = await irc_client("alice"), await irc_client("bob")
    await alice.join(CHANNEL, wait_for=BOT)
    await bob.join(CHANNEL, wait_for=BOT)
    alice.send(f"PRIVMSG {CHANNEL} :{BOT}: one")
    assert await alice.privmsg_from(BOT, CHANNEL) == "alice: [ok-primary] one (user messages: 1)"
    bob.send(f"PRIVMSG {CHANNEL} :{BOT}: two")
    reply = await bob.privmsg_from(BOT, CHANNEL, starting="bob: ")
    assert reply == "bob: [ok-primary] two (user messages: 1)"
    assert {"irc:#hermes:alice", "irc:#hermes:bob"} <= set(bot.intake.gateway.cache)


@needs_ngircd
async def test_long_replies_are_split_to_fit_irc_lines(start_bot: Any, irc_client: Any) -> None:
    await start_bot()
    alice = await irc_client("alice")
    await alice.join(CHANNEL, wait_for=BOT)
    # 437 characters: fits in alice's line, but not in the bot's once it adds "alice: [..."
    words = " ".join(f"word{n}" for n in range(64))
    alice.send(f"PRIVMSG {CHANNEL} :{BOT}: {words}")
    first = await alice.privmsg_from(BOT, CHANNEL)
    second = await alice.privmsg_from(BOT, CHANNEL)
    assert first.startswith("alice: [ok-primary] word0 ")
    assert f"{first} {second}" == f"alice: [ok-primary] {words} (user messages: 1)"


@needs_ngircd
async def test_multi_line_replies_are_capped(start_bot: Any, irc_client: Any) -> None:
    await start_bot(max_reply_lines=3)
    alice = await irc_client("alice")
    alice.send(f"PRIVMSG {BOT} :/help")
    lines = [await alice.privmsg_from(BOT, "alice") for _ in range(3)]
    assert lines[0].startswith("/")
    assert re.fullmatch(r"\[\d+ more line\(s\) cut: ask for a shorter answer\]", lines[2])


@needs_ngircd
async def test_allow_users_refuses_other_nicks_without_a_run(
    start_bot: Any, irc_client: Any, fake_openai: FakeOpenAI
) -> None:
    await start_bot(allow_users=["alice"])
    mallory = await irc_client("mallory")
    await mallory.join(CHANNEL, wait_for=BOT)
    mallory.send(f"PRIVMSG {CHANNEL} :{BOT}: let me in")
    assert await mallory.privmsg_from(BOT, CHANNEL) == f"mallory: {REFUSAL}"
    assert fake_openai.requests == []
    alice = await irc_client("alice")
    alice.send(f"PRIVMSG {BOT} :hi")
    assert await alice.privmsg_from(BOT, "alice") == "[ok-primary] hi (user messages: 1)"


@needs_ngircd
async def test_working_notice_is_sent_while_a_slow_run_is_in_flight(
    start_bot: Any, irc_client: Any
) -> None:
    await start_bot("slow-1-model", working_notice="thinking...", working_after_s=0.1)
    alice = await irc_client("alice")
    alice.send(f"PRIVMSG {BOT} :take your time")
    answer = await alice.privmsg_from(BOT, "alice")
    assert answer == "[slow-1-model] take your time (user messages: 1)"
    notices = [line for line in alice.seen if line.command == "NOTICE" and line.nick == BOT]
    assert [n.params[-1] for n in notices] == ["thinking..."]
    assert alice.seen.index(notices[0]) < len(alice.seen) - 1, "the notice came before the answer"


@needs_ngircd
async def test_stop_delivers_the_reply_in_flight_then_quits(
    start_bot: Any, irc_client: Any, fake_openai: FakeOpenAI
) -> None:
    bot = await start_bot("slow-1-model")
    alice = await irc_client("alice")
    await alice.join(CHANNEL, wait_for=BOT)
    alice.send(f"PRIVMSG {CHANNEL} :{BOT}: finish this")
    while not fake_openai.requests:
        await asyncio.sleep(0.02)
    stopping = asyncio.create_task(bot.stop())
    answer = await alice.privmsg_from(BOT, CHANNEL)
    await alice.expect(lambda line: line.command == "QUIT" and line.nick == BOT)
    await stopping
    assert answer == "alice: [slow-1-model] finish this (user messages: 1)"
    assert bot.intake.in_flight == 0


#: Seconds between the lines a ``lines-*`` model streams.
LINE_GAP_S = 0.4


def _answer_in_lines(script: fake_script.Script, request: RecordedRequest) -> Answer:
    """``lines-*``: three lines echoing the user's text, streamed one per chunk."""
    said = request.messages[-1]["content"]
    pieces = tuple(f"line {n}: {said}\n" for n in (1, 2, 3))
    return Answer("".join(pieces), pieces=pieces, chunk_delay_s=LINE_GAP_S)


@pytest.fixture
def lines_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scripted server answers ``lines-*`` models with :func:`_answer_in_lines`."""
    monkeypatch.setitem(fake_script.PREFIXES, "lines", _answer_in_lines)


@needs_ngircd
@pytest.mark.slow
async def test_each_line_is_sent_as_it_completes_while_the_upstream_streams(
    start_bot: Any, irc_client: Any, lines_model: None
) -> None:
    await start_bot("lines-model")
    alice = await irc_client("alice")
    await alice.join(CHANNEL, wait_for=BOT)
    alice.send(f"PRIVMSG {CHANNEL} :{BOT}: go")
    first = await alice.privmsg_from(BOT, CHANNEL)
    first_at = time.monotonic()
    rest = [await alice.privmsg_from(BOT, CHANNEL) for _ in range(2)]
    # The upstream sends line 3 two gaps after line 1: had the bot waited for the whole
    # reply, all three would arrive within its flood delay of each other.
    assert time.monotonic() - first_at >= 1.5 * LINE_GAP_S
    assert [first, *rest] == ["alice: line 1: go", "line 2: go", "line 3: go"]


@needs_ngircd
@pytest.mark.slow
async def test_streamed_replies_to_one_channel_do_not_interleave(
    start_bot: Any, irc_client: Any, lines_model: None
) -> None:
    await start_bot("lines-model")
    alice, bob = await irc_client("alice"), await irc_client("bob")
    await alice.join(CHANNEL, wait_for=BOT)
    await bob.join(CHANNEL, wait_for=BOT)
    alice.send(f"PRIVMSG {CHANNEL} :{BOT}: a")
    await alice.privmsg_from(BOT, CHANNEL, starting="alice: line 1")
    bob.send(f"PRIVMSG {CHANNEL} :{BOT}: b")  # bob's run streams while alice's reply does
    got = [await alice.privmsg_from(BOT, CHANNEL) for _ in range(5)]
    assert got == ["line 2: a", "line 3: a", "bob: line 1: b", "line 2: b", "line 3: b"]


@needs_ngircd
async def test_takes_another_nick_when_its_own_is_in_use(start_bot: Any, irc_client: Any) -> None:
    await irc_client(BOT)  # someone already has it
    bot = await start_bot()
    assert bot.nick == f"{BOT}_"
    alice = await irc_client("alice")
    await alice.join(CHANNEL, wait_for=bot.nick)
    alice.send(f"PRIVMSG {CHANNEL} :{bot.nick}: hello")
    assert (await alice.privmsg_from(bot.nick, CHANNEL)).startswith("alice: [ok-primary] hello")


@needs_ngircd
async def test_reconnects_and_rejoins_after_the_server_restarts(
    start_bot: Any, ngircd: IrcServer, tmp_path: Path
) -> None:
    bot = await start_bot()
    port = ngircd.port
    ngircd.stop()
    restarted = start_ngircd(tmp_path / "ngircd", port)
    try:
        alice = await IrcClient.connect(port, "alice")
        try:
            await alice.join(CHANNEL, wait_for=BOT)
            alice.send(f"PRIVMSG {CHANNEL} :{BOT}: back?")
            answer = await alice.privmsg_from(BOT, CHANNEL)
        finally:
            await alice.close()
        assert answer.startswith("alice: [ok-primary] back?")
        assert CHANNEL in bot.channels
    finally:
        await bot.stop()
        restarted.stop()


async def test_unreachable_server_fails_start(
    make_gateway: Any, fake_openai: FakeOpenAI, hermes_irc: Any
) -> None:
    table = {"server": "127.0.0.1", "port": _free_port(), "connect_timeout_s": 5}
    gateway = await make_gateway()
    bot = hermes_irc.platform.IrcPlatform(gateway, table)
    with pytest.raises(OSError):
        await bot.start()
    await bot.stop()


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({}, "platforms.irc.server"),
        ({"server": "x", "nick": "9lives"}, "platforms.irc.nick"),
        ({"server": "x", "channels": ["hermes"]}, "platforms.irc.channels"),
        ({"server": "x", "channels": "#hermes"}, "platforms.irc.channels"),
        ({"server": "x", "port": 0}, "platforms.irc.port"),
        ({"server": "x", "allow_users": "alice"}, "platforms.irc.allow_users"),
    ],
)
async def test_bad_settings_name_the_key(
    make_gateway: Any, hermes_irc: Any, table: dict[str, Any], key: str
) -> None:
    gateway = await make_gateway()
    with pytest.raises(ConfigError) as error:
        hermes_irc.platform.IrcPlatform(gateway, table)
    assert error.value.key == key


# --- installed with pip, found through the entry point -------------------------------------------


@pytest.fixture(scope="module")
def irc_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pip_install(IRC_SOURCE, tmp_path_factory)


def test_plugins_lists_the_adapter_with_its_distribution(irc_site: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hermes_core", "plugins"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=cli_env(irc_site),
    )
    assert done.returncode == 0, done.stderr
    irc = [p for p in json.loads(done.stdout) if p["name"] == "irc"]
    assert irc == [
        {
            "name": "irc",
            "dist": "hermes-irc",
            "version": "0.1.0",
            "hooks": ["register_platforms"],
            "builtin": False,
            "status": "loaded",
        }
    ]


@needs_ngircd
async def test_hermes_core_run_serves_irc_end_to_end(
    irc_site: Path, ngircd: IrcServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text(
        f"""
[agent]
model = "local:ok-primary"

[providers.local]
base_url = "{fake_openai.url}"
max_retries = 0

[platforms.irc]
enabled = true
server = "127.0.0.1"
port = {ngircd.port}
nick = "{BOT}"
channels = ["{CHANNEL}"]
"""
    )
    env = cli_env(irc_site, XDG_DATA_HOME=str(tmp_path / "data"))
    async with hermes_run_process(settings, env) as process:
        alice = await IrcClient.connect(ngircd.port, "alice")
        try:
            await alice.join(CHANNEL, wait_for=BOT)
            alice.send(f"PRIVMSG {CHANNEL} :{BOT}: are you there?")
            assert await alice.privmsg_from(BOT, CHANNEL) == (
                "alice: [ok-primary] are you there? (user messages: 1)"
            )
            process.send_signal(signal.SIGTERM)
            quit_line = await alice.expect(lambda line: line.command == "QUIT" and line.nick == BOT)
            code = await asyncio.wait_for(process.wait(), TIMEOUT_S)
        finally:
            await alice.close()
    assert process.stderr is not None
    log = (await process.stderr.read()).decode()
    assert code == 0, log
    assert "shutting down" in quit_line.params[-1]
    assert "irc: connected to 127.0.0.1" in log
    assert "Traceback" not in log


# --- the wire format -----------------------------------------------------------------------------


def test_parse_reads_prefix_command_params_and_trailing(hermes_irc: Any) -> None:
    parse = hermes_irc.protocol.parse
    line = parse("@time=x :alice!~a@host PRIVMSG #hermes :hermesbot: hi there\r\n")
    assert (line.prefix, line.nick, line.command) == ("alice!~a@host", "alice", "PRIVMSG")
    assert line.params == ("#hermes", "hermesbot: hi there")
    assert parse("PING :token").params == ("token",)
    assert parse(":srv 001 bot :Welcome bot!~b@h").param(5) == ""
    assert parse(":srv 353 bot = #c :a b").params == ("bot", "=", "#c", "a b")


def test_command_strips_line_breaks_so_a_reply_cannot_inject_commands(hermes_irc: Any) -> None:
    command = hermes_irc.protocol.command
    assert command("PRIVMSG", "#c", "hi\r\nQUIT :gone\x00") == b"PRIVMSG #c :hiQUIT :gone\r\n"
    assert command("NICK", "bot") == b"NICK :bot\r\n"


def test_addressed_text_accepts_colon_or_comma_in_any_case(hermes_irc: Any) -> None:
    addressed = hermes_irc.protocol.addressed_text
    assert addressed("hermes: hi", "hermes") == "hi"
    assert addressed("HERMES, hi: there", "hermes") == "hi: there"
    assert addressed("hermesx: hi", "hermes") is None
    assert addressed("hi hermes", "hermes") is None


def test_split_text_fits_bytes_keeps_words_and_utf8_whole(hermes_irc: Any) -> None:
    split = hermes_irc.protocol.split_text
    assert split("one two three", 9) == ["one two", "three"]
    assert split("first\n\nsecond", 50, first_prefix="al: ") == ["al: first", "second"]
    long_word = "x" * 25
    assert split(long_word, 10) == ["x" * 10, "x" * 10, "x" * 5]
    pieces = split("é" * 11, 9)  # two bytes each: four fit in nine bytes
    assert pieces == ["éééé", "éééé", "ééé"]
    assert all(len(p.encode()) <= 9 for p in pieces)
    with pytest.raises(ValueError):
        split("text", 10, first_prefix="a-long-prefix: ")


def test_payload_budget_leaves_room_for_the_relayed_prefix(hermes_irc: Any) -> None:
    budget = hermes_irc.protocol.payload_budget
    exact = budget("bot", "~bot@127.0.0.1", "#c")
    relayed = f":bot!~bot@127.0.0.1 PRIVMSG #c :{'x' * exact}\r\n"
    assert len(relayed.encode()) == 512
    assert budget("bot", None, "#c") < exact  # unknown host: assume the longest
