"""docs/deployment.md's haproxy configuration, run as written (ports aside) in front of two
``hermes-core run`` processes on one PostgreSQL store: one session's messages go to both, and
each run sees the whole conversation."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import httpx2
import pytest
from helpers_scale import GatewayProcess, write_settings

from hermes_core.testing import FakeOpenAI
from hermes_core.testing.postgres import free_port

DEPLOYMENT = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
)


def documented_config(front: int, first: int, second: int) -> str:
    [config] = re.findall(r"```haproxy\n(.*?)```", DEPLOYMENT.read_text(), re.DOTALL)
    for documented, port in (("8000", front), ("8001", first), ("8002", second)):
        config = config.replace(f"127.0.0.1:{documented}", f"127.0.0.1:{port}")
    return config


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (apt-get install haproxy)")
async def test_documented_haproxy_spreads_one_session_over_two_processes(
    tmp_path: Path, fake_openai: FakeOpenAI, postgres_url: str
) -> None:
    ports = [free_port(), free_port()]
    gateways = [
        GatewayProcess(
            # A model name per process: the replies tell which one served each message.
            write_settings(
                tmp_path / f"g{n}.toml", fake_openai.url, postgres_url, port, f"slow-0.05-g{n}"
            ),
            f"http://127.0.0.1:{port}",
        )
        for n, port in enumerate(ports)
    ]
    front = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(documented_config(front, *ports))
    assert HAPROXY is not None
    proxy = subprocess.Popen(
        [HAPROXY, "-f", str(config), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        await asyncio.gather(*(g.start() for g in gateways))
        async with httpx2.AsyncClient(timeout=60) as http:
            # haproxy's health checks mark each backend up in its own time: until both
            # have answered another session, the round-robin below may see only one.
            seen: set[str] = set()
            for number in range(200):
                if seen == {"g0", "g1"}:
                    break
                warm_up = {"model": "any", "messages": [{"role": "user", "content": "hi"}]}
                response = await http.post(
                    f"http://127.0.0.1:{front}/v1/chat/completions",
                    json=warm_up,
                    headers={"X-Hermes-Session": f"warm-up-{number}"},
                )
                if response.status_code == 200:
                    content = response.json()["choices"][0]["message"]["content"]
                    seen |= set(re.findall(r"\[slow-0\.05-(g\d)\]", content))
                else:
                    await asyncio.sleep(0.1)
            assert seen == {"g0", "g1"}, "haproxy never sent to both backends"
            replies = []
            for number in range(6):
                body = {"model": "any", "messages": [{"role": "user", "content": f"m{number}"}]}
                response = await http.post(
                    f"http://127.0.0.1:{front}/v1/chat/completions",
                    json=body,
                    headers={"X-Hermes-Session": "behind-haproxy"},
                )
                assert response.status_code == 200, response.text
                replies.append(response.json()["choices"][0]["message"]["content"])
        # Round-robin: both processes served the session, each run with the whole history.
        served = [
            re.match(r"\[slow-0\.05-(g\d)\] m(\d) \(user messages: (\d)\)", r) for r in replies
        ]
        assert all(served), replies
        assert {match.group(1) for match in served if match} == {"g0", "g1"}
        assert [(m.group(2), m.group(3)) for m in served if m] == [
            (str(n), str(n + 1)) for n in range(6)
        ]
    finally:
        proxy.terminate()
        proxy.wait(10)
        for gateway in gateways:
            await gateway.kill()
