"""crm.side_query: statements on a second connection, in a thread."""

import time

import pytest
from django.db import DataError, OperationalError, connection

from crm.side_query import side_chunks, side_query
from crm.tests.factories import CustomerFactory


def _running(pid: int, sql: str) -> bool:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active' AND query = %s",
            [pid, sql],
        )
        return cur.fetchone() is not None


@pytest.mark.django_db(transaction=True)
def test_result_is_the_last_statements_rows_over_committed_data():
    CustomerFactory.create_batch(3)  # committed: this test runs outside a transaction
    statements = [("SET work_mem = '8MB'", None), ("SELECT COUNT(*) + %s FROM crm_customer", [1])]
    with side_query(statements) as query:
        assert query.result() == [(4,)]


@pytest.mark.django_db(transaction=True)
def test_an_error_of_the_statements_is_raised_by_result():
    with pytest.raises(DataError, match="division by zero"), side_query([("SELECT 1 / 0", None)]):
        pass  # leaving the block waits for the result


@pytest.mark.django_db(transaction=True)
def test_leaving_the_block_with_an_error_cancels_the_running_statement():
    sleep = "SELECT pg_sleep(60)"
    with pytest.raises(RuntimeError, match="caller failed"), side_query([(sleep, None)]) as query:
        query._started.wait(timeout=10)
        for _ in range(100):
            if _running(query._pid, sleep):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the statement never started")
        raise RuntimeError("caller failed")
    assert not query._thread.is_alive()
    assert isinstance(query._error, OperationalError)
    assert "canceling statement" in str(query._error)


def _chunk(index: int):
    return "SELECT %s, COUNT(*) FROM crm_customer WHERE id %% 4 = %s", [index, index % 4]


@pytest.mark.django_db(transaction=True)
def test_chunks_are_shared_and_each_is_run_once():
    CustomerFactory.create_batch(8)
    mine = []
    with side_chunks([("SET work_mem = '8MB'", None)], _chunk, 12) as chunks:
        chunks._started.wait(timeout=10)  # its connection is open
        while (index := chunks.take()) is not None:
            mine.append(index)
            with connection.cursor() as cur:
                cur.execute(*chunks.chunk(index))
                chunks.put(index, cur.fetchall())
            time.sleep(0.05)  # leave the second connection time to take some
        rows = chunks.result()
    assert [r[0][0] for r in rows] == list(range(12))  # every chunk's rows, in order
    assert sum(r[0][1] for r in rows) == 3 * 8
    assert mine == list(range(11, 11 - len(mine), -1))  # the caller took from the last down
    assert len(mine) < 12  # and the second connection the others, from the first


@pytest.mark.django_db(transaction=True)
def test_an_error_in_a_chunk_is_raised_and_leaving_with_an_error_stops_the_chunks():
    def broken(index: int):
        return ("SELECT 1 / 0", None) if index == 0 else _chunk(index)

    with pytest.raises(DataError, match="division by zero"), side_chunks([], broken, 3):
        pass
    slow = [("SELECT pg_sleep(0.2)", None)]
    with pytest.raises(RuntimeError, match="caller failed"), side_chunks(slow, _chunk, 50) as c:
        raise RuntimeError("caller failed")
    assert not c._thread.is_alive()
    assert c.take() is None
