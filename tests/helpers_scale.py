"""``hermes-core run`` processes on one PostgreSQL store, for the scale-out tests: their
settings, and a process handle that starts, stops, kills and restarts one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path

from hermes_core.testing import cli_env, hermes_run_process, settings_for
from hermes_core.testing import write_settings as kit_write_settings
from hermes_core.testing.postgres import free_port

LISTENING = re.compile(r"http platform listening on (http://\S+)")
#: Each upstream answer takes this long: runs last long enough to overlap if they could.
MODEL = "slow-0.05-primary"


def write_settings(
    path: Path, base_url: str, database_url: str, port: int, model: str = MODEL, api_key: str = ""
) -> Path:
    """Settings for one gateway of the test: the scripted ``model``, the shared store, the
    http platform on ``port``; ``api_key`` tells its upstream requests from the others'."""
    provider = {"base_url": base_url, "max_retries": 0, "timeout_s": 30, "api_key": api_key}
    return kit_write_settings(
        path,
        settings_for(
            base_url,
            model,
            logging={"level": "INFO"},
            providers={"local": provider},
            store={"url": database_url},
            platforms={"http": {"enabled": True, "host": "127.0.0.1", "port": port}},
        ),
    )


@dataclass
class GatewayProcess:
    """One ``hermes-core run`` process of the test, restartable on its port."""

    settings: Path
    url: str
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    process: asyncio.subprocess.Process | None = None
    logs: list[str] = field(default_factory=list)

    async def start(self) -> None:
        self.stack = contextlib.AsyncExitStack()
        env = cli_env(HERMES_LOAD_PLUGINS="")
        self.process = await self.stack.enter_async_context(hermes_run_process(self.settings, env))
        stderr = self.process.stderr
        assert stderr is not None

        async def listening() -> None:
            while line := (await stderr.readline()).decode():
                self.logs.append(line)
                if LISTENING.search(line):
                    return
            raise AssertionError("hermes-core run ended before listening:\n" + "".join(self.logs))

        await asyncio.wait_for(listening(), 60)
        drain = asyncio.create_task(self._drain(stderr))
        self.stack.push_async_callback(self._stop_draining, drain)

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while line := (await stream.readline()).decode():
            self.logs.append(line)

    @staticmethod
    async def _stop_draining(drain: asyncio.Task[None]) -> None:
        await asyncio.wait({drain}, timeout=30)
        drain.cancel()

    async def stop(self) -> None:
        """SIGTERM: finish what is in flight, exit 0."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(self.process.wait(), 60) == 0, "".join(self.logs)
        await self.stack.aclose()

    async def restart_elsewhere(self) -> None:
        """Start again, on a new port: the killed one's may not be free yet."""
        port = free_port()
        text = re.sub(r"port = \d+", f"port = {port}", self.settings.read_text())
        self.settings.write_text(text)
        self.url = f"http://127.0.0.1:{port}"
        await self.start()

    def freeze(self) -> None:
        """SIGSTOP to its process group: it sends and answers nothing until :meth:`thaw`."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT to its process group: it carries on where :meth:`freeze` stopped it."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)

    async def kill(self) -> None:
        """SIGKILL to its process group (a no-op once it has exited), then clean up."""
        if self.process is not None and self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
        await self.stack.aclose()
