"""The same wrk load on hermes-core with the SQLite store, the PostgreSQL store on 1 process,
and on 2 processes sharing one database.

wrk (``make servers`` installs it) posts one message per request, each request in a session of
its own header (``bench/sessions.lua``), 50 connections in all; with 2 processes each gets half
of the connections (one wrk per process, run at once: what a load balancer would do). The
PostgreSQL cluster is a throw-away one (:mod:`hermes_core.testing.postgres`) with ``fsync`` on,
so a commit costs what it costs in production on this disk.

Each row: requests/s, latency p50/p99, the gateways' CPU per request (utime + stime over the
window, summed over the processes), and for PostgreSQL the database round trips per message:
statement executions counted by ``pg_stat_statements`` over the window, divided by the requests
(asyncpg sends each statement as one round trip; the pool's reset query is one round trip of
four statements and is counted once).

    .venv/bin/python bench/store_scaling.py [--seconds 8] [--connections 50]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from http_load import cpu_seconds, machine, wrk
from support import Served, hermes_process, markdown_table, scripted_process

from hermes_core.testing.postgres import PostgresCluster

#: Statements of asyncpg's reset query besides ``pg_advisory_unlock_all()``: same round trip.
RESET_EXTRAS = ("CLOSE ALL", "UNLISTEN *", "RESET ALL")
HERMES_SETTINGS = "[cache]\nmax_agents = 20000\n"


@dataclass(frozen=True)
class Result:
    store: str
    processes: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float
    round_trips: float | None  # per message; None for SQLite
    errors: int


def statements(cluster: PostgresCluster, database: str) -> int:
    """Statements executed in ``database`` so far, one per round trip."""
    extras = ", ".join(f"'{s}'" for s in RESET_EXTRAS)
    return int(
        cluster.psql(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid "
            f"WHERE d.datname = '{database}' AND s.query NOT IN ({extras}) "
            "AND s.query NOT LIKE '%pg_stat_statements%'",
            database,
        )
    )


def measure(
    store: str,
    gateways: list[Served],
    connections: int,
    seconds: float,
    cluster: PostgresCluster | None = None,
    database: str = "",
) -> Result:
    before_cpu = sum(cpu_seconds(g.pid) for g in gateways)
    before_statements = statements(cluster, database) if cluster else 0
    summaries: list[dict[str, int]] = []
    share = max(connections // len(gateways), 1)

    def load(served: Served, number: int) -> None:
        summaries.append(wrk(served.url, share, seconds, f"{store}-{len(gateways)}-{number}"))

    threads = [threading.Thread(target=load, args=(g, n)) for n, g in enumerate(gateways)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    requests = sum(s["requests"] for s in summaries)
    used = sum(cpu_seconds(g.pid) for g in gateways) - before_cpu
    trips = statements(cluster, database) - before_statements if cluster else None
    return Result(
        store,
        len(gateways),
        sum(s["requests"] / (s["duration_us"] / 1e6) for s in summaries),
        max(s["p50_us"] for s in summaries) / 1000,
        max(s["p99_us"] for s in summaries) / 1000,
        used / requests * 1000 if requests else float("nan"),
        trips / requests if trips is not None and requests else None,
        sum(s["errors"] + s["failed"] for s in summaries),
    )


@contextlib.contextmanager
def gateways(upstream: str, store: str, count: int) -> Iterator[list[Served]]:
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(hermes_process(upstream, store_path=None, extra_settings=store))
            for _ in range(count)
        ]


def run(seconds: float, connections: int) -> list[Result]:
    results = []
    with (
        scripted_process() as upstream,
        PostgresCluster(fsync=True) as cluster,
        tempfile.TemporaryDirectory(prefix="hermes-bench-") as work,
    ):
        sqlite = f'[store]\npath = "{Path(work) / "sessions.db"}"\n{HERMES_SETTINGS}'
        with gateways(upstream.url, sqlite, 1) as served:
            wrk(served[0].url, connections, 1, "warm-up")
            results.append(measure("sqlite", served, connections, seconds))
        for count in (1, 2):
            database = cluster.create_database()
            cluster.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", database)
            postgres = f'[store]\nurl = "{cluster.url(database)}"\n{HERMES_SETTINGS}'
            with gateways(upstream.url, postgres, count) as served:
                for gateway in served:
                    wrk(gateway.url, connections, 1, f"warm-up-{gateway.pid}")
                results.append(
                    measure("postgresql", served, connections, seconds, cluster, database)
                )
    return results


def table(results: list[Result]) -> str:
    header = (
        "store | processes | req/s | p50 ms | p99 ms | CPU ms/request "
        "| DB round trips/message | errors"
    )
    rows = [
        (
            r.store,
            str(r.processes),
            f"{r.rps:.0f}",
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.cpu_ms:.2f}",
            f"{r.round_trips:.2f}" if r.round_trips is not None else "-",
            str(r.errors),
        )
        for r in results
    ]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=50)
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk): this benchmark needs it")
    print(machine())
    print(table(run(options.seconds, options.connections)))


if __name__ == "__main__":
    main()
