"""Statements run on a second database connection, in a thread, while the caller's own
connection goes on.

PostgreSQL runs one statement's sorts and window functions in a single process; the nightly
job's full refresh has two such big reads of every order and interaction (the payback days
and cohort cells, and the other metrics), so it runs one of them here and the two share the
machine's cores. A milestone lets the caller wait for the first statements alone (a share of
the caller's own work, done here first).

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
    none), or raises what they raised. `milestone_wait()` waits for statements 0 to
    `milestone` alone."""

    def __init__(
        self,
        statements: list[tuple[str, dict | list | None]],
        *,
        alias: str,
        milestone: int | None = None,
    ):
        self._statements = statements
        self._milestone = milestone
        self._milestone_done = threading.Event()
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
        for index, (sql, params) in enumerate(self._statements):
            cursor.execute(sql, params)
            if index == self._milestone:
                self._milestone_done.set()

    def _finished(self) -> None:
        """Called in the thread once its work has ended, however it ended."""
        self._milestone_done.set()  # a failure before the milestone wakes milestone_wait()

    def milestone_wait(self) -> None:
        """Wait for the statements up to `milestone` (all of them if None); raise what they (or
        any statement since) raised."""
        self._milestone_done.wait()
        if self._error is not None:
            raise self._error

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
    statements: list[tuple[str, dict | list | None]],
    *,
    alias: str = DEFAULT_DB_ALIAS,
    milestone: int | None = None,
) -> Iterator[SideQuery]:
    """Start `statements` on a second connection; the block calls result() when it needs them
    (and milestone_wait() for those up to `milestone`). Leaving the block with an exception
    cancels them; either way the thread has ended when the block is left."""
    with _running(SideQuery(statements, alias=alias, milestone=milestone)) as query:
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
