"""crm.side_query: statements on a second connection, in a thread."""

import time

import pytest
from django.db import DataError, OperationalError, connection

from crm.side_query import side_query
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


@pytest.mark.django_db(transaction=True)
def test_the_caller_waits_for_the_statements_up_to_the_milestone_alone():
    CustomerFactory.create_batch(2)
    statements = [
        ("DROP TABLE IF EXISTS crm_test_milestone_side", None),
        ("CREATE UNLOGGED TABLE crm_test_milestone_side AS SELECT id FROM crm_customer", None),
        ("SELECT pg_sleep(0.5)", None),
        ("SELECT COUNT(*) FROM crm_test_milestone_side", None),
    ]
    try:
        with side_query(statements, milestone=1) as query:
            query.milestone_wait()
            assert query._thread.is_alive()  # still sleeping: only the table was waited for
            with connection.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM crm_test_milestone_side")
                assert cur.fetchone()[0] == 2
            assert query.result() == [(2,)]
    finally:
        with connection.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS crm_test_milestone_side")


@pytest.mark.django_db(transaction=True)
def test_an_error_before_the_milestone_is_raised_by_the_wait():
    statements = [("SELECT 1 / 0", None), ("SELECT 1", None)]
    with (
        pytest.raises(DataError, match="division by zero"),
        side_query(statements, milestone=1) as query,
    ):
        query.milestone_wait()
