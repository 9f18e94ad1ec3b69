"""A throw-away PostgreSQL cluster for tests and benchmarks: ``initdb`` into a temporary
directory, a free port on 127.0.0.1, its unix socket inside the directory, stopped and deleted
after.

``initdb`` and ``postgres`` refuse to run as root (which CI is): as root the cluster's
directory is given to the ``postgres`` OS user and both run as it through ``runuser``.
Connections over TCP need the password (``scram-sha-256``), so a test can prove that the
password is really used and never printed; the unix socket trusts the cluster's owner.

It lives in the test kit rather than in ``tests/`` so that plugin authors can run their
session-data code against PostgreSQL too, and so that ``bench/store_scaling.py`` can start the
same cluster outside pytest.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

#: The cluster's superuser and its password (a test cluster: the password is not secret, but it
#: is long enough that redaction replaces it wherever it appears).
USER = "hermes"
PASSWORD = "pg-test-password-8f3a"
#: ``max_connections``: three gateways with their pools, plus tests' own connections.
MAX_CONNECTIONS = 300


class PostgresMissing(RuntimeError):
    """The PostgreSQL server binaries are not installed here."""


def postgres_bin_dir() -> Path:
    """Where ``initdb`` and ``postgres`` are: Debian's ``/usr/lib/postgresql/<n>/bin`` (the
    newest), else the ``PATH``.

    Raises:
        PostgresMissing: no ``initdb`` anywhere.
    """
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise PostgresMissing("PostgreSQL is not installed (apt-get install postgresql)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresCluster:
    """A running cluster; ``with PostgresCluster() as cluster: cluster.url("db")``."""

    def __init__(self, *, fsync: bool = False) -> None:
        self.bin = postgres_bin_dir()
        self.port = free_port()
        self.fsync = fsync
        self.root = Path(tempfile.mkdtemp(prefix="hermes-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self._as_root = os.geteuid() == 0
        self._started = False

    def url(self, database: str = "postgres", *, password: bool = True) -> str:
        """``postgresql://hermes:…@127.0.0.1:<port>/<database>`` (``password=False``: without
        the password, which then has to come from ``store.password_env``)."""
        secret = f":{quote(PASSWORD)}" if password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)

    def _checked(self, *args: str) -> None:
        done = self._run(*args)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {(done.stderr or done.stdout).strip()}")

    def start(self) -> None:
        self.socket_dir.mkdir()
        password_file = self.root / "password"
        password_file.write_text(PASSWORD)
        if self._as_root:
            owner = pwd.getpwnam("postgres")
            for path in (self.root, self.socket_dir, password_file):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._checked(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            USER,
            "--pwfile",
            str(password_file),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
            "--encoding=UTF8",
            "--locale=C",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir} "
            f"-c max_connections={MAX_CONNECTIONS} -c fsync={'on' if self.fsync else 'off'} "
            "-c shared_preload_libraries=pg_stat_statements"
        )
        # -w: returns once the server accepts connections; the server is stopped in stop().
        self._checked(
            "pg_ctl",
            "start",
            "-w",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-o",
            options,
        )
        self._started = True

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` over the unix socket as the superuser; its output (unaligned)."""
        done = self._run(
            "psql", "-h", str(self.socket_dir), "-p", str(self.port), "-U", USER, "-d", database,
            "-v", "ON_ERROR_STOP=1", "-Atc", sql,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its name."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def server_pid(self) -> int | None:
        """The postmaster's pid while it runs (first line of ``postmaster.pid``)."""
        pid_file = self.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(pid_file.read_text().splitlines()[0])
        return None

    def stop(self) -> None:
        """Stop the server (``immediate``: test data needs no shutdown checkpoint) and delete
        the directory."""
        try:
            if self._started:
                pid = self.server_pid()
                self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))
                self._started = False
                if pid is not None:
                    _wait_gone(pid)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_gone(pid: int, timeout_s: float = 10.0) -> None:
    # pg_ctl -w returns when the pid file is gone, a moment before the postmaster has exited.
    deadline = time.monotonic() + timeout_s
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
