"""One SQLite connection on one dedicated thread, with group commit for writes.

Every read and every batch of writes is one job on the thread, so the event loop never blocks
on disk and a reader sees only committed data. Writes are queued, and one writer task commits
everything queued so far as one transaction (each write in its own savepoint, so one failing
write fails alone). A lone conversation pays one fsync per write; a hundred concurrent ones
share them.

A commit that fails as a whole (disk full, I/O error) raises its ``sqlite3.Error`` in every
caller of the batch and stores none of it; the connection stays usable for the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from loguru import logger

T = TypeVar("T")
#: A unit of work on the connection, run on the store thread.
Operation = Callable[[sqlite3.Connection], T]


class StoreThread:
    """Owns the connection, its thread and (when writable) the group-commit writer task.

    Args:
        name: Names the writer task and starts log lines and errors (``store <path>``).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._queue: list[tuple[Operation[Any], asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def connected(self) -> bool:
        """Whether the connection is open (between :meth:`start` and :meth:`close`)."""
        return self._db is not None

    async def start(self, connect: Callable[[], sqlite3.Connection], *, writable: bool) -> None:
        """Open the connection with ``connect`` on the thread; with ``writable``, start the
        writer task. An error from ``connect`` propagates and leaves nothing running."""
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hermes-core store")
        try:
            self._db = await self._on_thread(connect)
        finally:
            if self._db is None:
                self._thread.shutdown()
                self._thread = None
        self._closing = False
        if writable:
            self._wake = asyncio.Event()  # bound to this loop: a store may be reopened in another
            self._writer = asyncio.create_task(self._write_loop(), name=f"hermes-core {self.name}")

    async def close(self) -> None:
        """Commit what is queued, then close the connection and the thread."""
        writer, self._writer = self._writer, None
        if writer is not None:
            self._closing = True
            self._wake.set()
            await asyncio.wait([writer])  # its own failure was reported to each caller
        db, thread = self._db, self._thread
        self._db = self._thread = None
        if db is not None and thread is not None:
            await asyncio.get_running_loop().run_in_executor(thread, db.close)
        if thread is not None:
            thread.shutdown()

    async def read(self, operation: Operation[T]) -> T:
        """Run ``operation`` on the thread, outside any write transaction."""
        db = self._connection()
        return await self._on_thread(lambda: operation(db))

    async def write(self, operation: Operation[T]) -> T:
        """Queue ``operation`` for the next group commit; return its result once committed.

        Raises:
            sqlite3.Error: ``operation`` failed (rolled back alone), or the whole commit did
                (``OperationalError``: disk full, I/O error, locked past the busy timeout).
            RuntimeError: the store is not open for writing.
        """
        if self._writer is None or self._closing:
            raise RuntimeError(f"{self.name} is not open for writing")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((operation, future))
        self._wake.set()
        return await future

    async def _on_thread(self, operation: Callable[[], T]) -> T:
        if self._thread is None:
            raise RuntimeError(f"{self.name} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._thread, operation)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"{self.name} is not open")
        return self._db

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                await self._commit(batch)
            if self._closing:
                return

    async def _commit(self, batch: list[tuple[Operation[Any], asyncio.Future[Any]]]) -> None:
        db = self._connection()
        operations = [operation for operation, _ in batch]
        try:
            outcomes = await self._on_thread(lambda: _apply(db, operations))
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:  # the transaction failed as a whole: nothing is stored
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            logger.error("{}: commit failed: {}", self.name, error)
            return
        for (_, future), (value, failure) in zip(batch, outcomes, strict=True):
            if future.done():  # its caller was cancelled; the write is stored all the same
                continue
            if failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(value)


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back when anything fails, the commit too:
    a transaction left open would make the next batch's commit store this one's writes."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _apply(
    db: sqlite3.Connection, operations: list[Operation[Any]]
) -> list[tuple[Any, Exception | None]]:
    """Run ``operations`` in one transaction, each in a savepoint: one failing write is
    rolled back alone and reported to its caller; the others commit."""
    outcomes: list[tuple[Any, Exception | None]] = []
    with transaction(db):
        for operation in operations:
            db.execute("SAVEPOINT operation")
            try:
                outcomes.append((operation(db), None))
            except Exception as error:
                if not db.in_transaction:  # SQLite rolled back everything (disk full, I/O)
                    raise
                db.execute("ROLLBACK TO operation")
                outcomes.append((None, error))
            db.execute("RELEASE operation")
    return outcomes
