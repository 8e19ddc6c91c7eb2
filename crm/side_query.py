"""Statements run on a second database connection, in a thread, while the caller's own
connection goes on.

PostgreSQL runs one statement's sorts and window functions in a single process; the nightly
job's full refresh has two such big reads of every order and interaction (the payback days
and the other metrics), so it runs one of them here and the two share the machine's cores.

SideChunks shares one piece of work, in chunks, between the caller's connection and a second
one, so that neither waits long for the other.

Only for reads of committed data: the second connection sees nothing the caller has not
committed, so callers use it only when they are not inside an outer transaction. Whatever the
statements write must be committed by them (autocommit) and cleaned up by the caller.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from django.db import DEFAULT_DB_ALIAS, connections


class SideQuery:
    """Statements [(sql, params)] run in order on a fresh connection of `alias`, in a thread.
    `result()` waits for them and returns the last statement's rows (None when it returns
    none), or raises what they raised."""

    def __init__(self, statements: list[tuple[str, dict | list | None]], *, alias: str):
        self._statements = statements
        self._alias = alias
        self._rows = None
        self._error: BaseException | None = None
        self._pid: int | None = None
        self._started = threading.Event()  # the backend pid is known (or the connection failed)
        self._thread = threading.Thread(target=self._run, name="side-query", daemon=True)

    def start(self) -> SideQuery:
        self._thread.start()
        return self

    def _run(self) -> None:
        # A connection of its own, made and closed in this thread (Django connections are
        # per thread; this one never enters the thread-local registry).
        conn = connections.create_connection(self._alias)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self._pid = cursor.fetchone()[0]
                self._started.set()
                self._work(cursor)
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc
        finally:
            self._started.set()
            self._finished()
            conn.close()

    def _work(self, cursor) -> None:
        self._execute_statements(cursor)
        self._rows = cursor.fetchall() if cursor.description else None

    def _execute_statements(self, cursor) -> None:
        for sql, params in self._statements:
            cursor.execute(sql, params)

    def _finished(self) -> None:
        """Called in the thread once its work has ended, however it ended."""

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._rows

    def cancel(self) -> None:
        """Cancel a statement still running (the caller failed) and wait for the thread. Uses a
        third connection: the caller's may be in a failed transaction."""
        self._started.wait()
        if self._thread.is_alive() and self._pid is not None:
            conn = connections.create_connection(self._alias)
            try:
                with conn.cursor() as cursor:
                    cursor.execute("SELECT pg_cancel_backend(%s)", [self._pid])
            finally:
                conn.close()
        self._thread.join()


@contextlib.contextmanager
def side_query(
    statements: list[tuple[str, dict | list | None]], *, alias: str = DEFAULT_DB_ALIAS
) -> Iterator[SideQuery]:
    """Start `statements` on a second connection; the block calls result() when it needs them.
    Leaving the block with an exception cancels them; either way the thread has ended when the
    block is left."""
    with _running(SideQuery(statements, alias=alias)) as query:
        yield query


@contextlib.contextmanager
def _running(query: SideQuery) -> Iterator:
    query.start()
    try:
        yield query
    except BaseException:
        query.cancel()
        raise
    query.result()


class SideChunks(SideQuery):
    """Chunks 0..n-1 of one piece of work, shared by the caller's connection and a second one:
    the second connection (a thread) runs `setup`, then chunk(i) from the first chunk up; the
    caller takes them from the last down (take(), then put() the rows it got), until none is
    left. Whatever else each side had to do first, neither waits for the other longer than one
    chunk. `chunk(i)` returns (sql, params); result() returns every chunk's rows, in order."""

    def __init__(self, setup, chunk, n: int, *, alias: str):
        super().__init__(setup, alias=alias)
        self._chunk = chunk
        self._chunks: list = [None] * n
        self._low, self._high = 0, n - 1  # the next chunk for the thread, for the caller
        self._lock = threading.Lock()
        self._setup_done = threading.Event()

    def _next(self, *, low: bool) -> int | None:
        with self._lock:
            if self._low > self._high:
                return None
            if low:
                self._low += 1
                return self._low - 1
            self._high -= 1
            return self._high + 1

    def take(self) -> int | None:
        """The caller's next chunk (from the last), or None when every chunk is taken."""
        return self._next(low=False)

    def chunk(self, index: int) -> tuple:
        """(sql, params) of chunk `index`, for the caller to run."""
        return self._chunk(index)

    def put(self, index: int, rows: list) -> None:
        self._chunks[index] = rows

    def _work(self, cursor) -> None:
        self._execute_statements(cursor)  # the setup
        self._setup_done.set()
        while (index := self._next(low=True)) is not None:
            cursor.execute(*self._chunk(index))
            self._chunks[index] = cursor.fetchall()

    def _finished(self) -> None:
        self._setup_done.set()  # a failed setup wakes setup_wait(), which raises

    def setup_finished(self) -> bool:
        """Whether `setup` has run (or failed)."""
        return self._setup_done.is_set()

    def setup_wait(self) -> None:
        """Wait for `setup` to have run; raise what it (or a chunk since) raised."""
        self._setup_done.wait()
        if self._error is not None:
            raise self._error

    def result(self) -> list:
        super().result()
        return self._chunks

    def cancel(self) -> None:
        with self._lock:  # no chunk taken any more, by either side
            self._low, self._high = 1, 0
        super().cancel()


@contextlib.contextmanager
def side_chunks(
    setup: list[tuple[str, dict | list | None]],
    chunk,
    n: int,
    *,
    alias: str = DEFAULT_DB_ALIAS,
) -> Iterator[SideChunks]:
    """Start SideChunks(setup, chunk, n) on a second connection, as side_query() does."""
    with _running(SideChunks(setup, chunk, n, alias=alias)) as query:
        yield query
