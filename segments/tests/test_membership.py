"""memberships_refresh: exclusive by priority, set-based, history kept, idempotent."""

import datetime as dt

import pytest

from crm.metrics import metrics_refresh
from crm.models import CustomerMetrics
from crm.tests.factories import CustomerFactory
from segments import selectors, services
from segments.models import BucketMembership, CurrentMembership
from segments.services import bucket_update, memberships_refresh
from segments.tests.factories import BucketFactory

pytestmark = pytest.mark.django_db

DAY1 = dt.date(2026, 5, 1)
DAY2 = dt.date(2026, 5, 2)


def rule(field, operator, value):
    return {"op": "and", "conditions": [{"field": field, "operator": operator, "value": value}]}


@pytest.fixture
def setup():
    high = BucketFactory(name="High effort", priority=1, rules=rule("effort", ">=", 7))
    seoul = BucketFactory(name="Seoul", priority=2, rules=rule("city", "=", "Seoul"))
    a = CustomerFactory(service_effort=9, city="Seoul")  # both match: priority 1 wins
    b = CustomerFactory(service_effort=2, city="Seoul")
    c = CustomerFactory(service_effort=None, city="Busan")  # none: Unsegmented
    return high, seoul, a, b, c


def current(customer):
    return CurrentMembership.objects.get(customer=customer)


def test_exclusive_by_priority_and_unsegmented(setup, django_assert_max_num_queries):
    high, seoul, a, b, c = setup
    with django_assert_max_num_queries(23):  # a fixed number, whatever the customer count
        result = memberships_refresh(as_of=DAY1)
    assert result["counts"] == {high.pk: 1, seoul.pk: 1, None: 1}
    assert current(a).bucket == high
    assert current(b).bucket == seoul
    assert current(c).bucket is None
    assert "High effort" in current(a).reason
    assert current(c).reason == "No active bucket matched"
    assert BucketMembership.objects.filter(left_on__isnull=True).count() == 3
    assert result["entered"] == 3 and result["left"] == 0


def test_counts_add_up_to_all_customers(setup):
    result = memberships_refresh(as_of=DAY1)
    assert sum(result["counts"].values()) == 3
    assert CurrentMembership.objects.count() == 3


def test_second_run_changes_nothing(setup):
    memberships_refresh(as_of=DAY1)
    result = memberships_refresh(as_of=DAY2)
    assert result["entered"] == 0 and result["left"] == 0
    assert BucketMembership.objects.count() == 3
    assert CurrentMembership.objects.filter(since=DAY1).count() == 3


@pytest.mark.parametrize("keyed_max", [50_000, 0], ids=["by-key", "as-planned"])
def test_history_closes_and_opens_rows_when_a_customer_moves(setup, keyed_max, monkeypatch):
    # Both ways of writing the changes (by key up to KEYED_WRITES_MAX, else as planned).
    monkeypatch.setattr(services, "KEYED_WRITES_MAX", keyed_max)
    high, seoul, a, b, c = setup
    memberships_refresh(as_of=DAY1)
    a.service_effort = 3
    a.save(update_fields=["service_effort"])
    result = memberships_refresh(as_of=DAY2)
    assert result == {
        "counts": {seoul.pk: 2, None: 1},
        "entered": 1,
        "left": 1,
        "skipped": [],
    }
    history = list(selectors.membership_history(a))
    assert [(m.bucket, m.entered_on, m.left_on) for m in history] == [
        (seoul, DAY2, None),
        (high, DAY1, DAY2),
    ]
    assert current(a).bucket == seoul and current(a).since == DAY2


def test_priority_change_moves_customers(setup):
    high, seoul, a, b, c = setup
    bucket_update(bucket=high, priority=3)
    memberships_refresh(as_of=DAY1)
    assert current(a).bucket == seoul


def test_inactive_bucket_is_ignored(setup):
    high, seoul, a, b, c = setup
    bucket_update(bucket=high, active=False)
    memberships_refresh(as_of=DAY1)
    assert current(a).bucket == seoul


def test_only_the_given_customers_are_evaluated(setup):
    high, seoul, a, b, c = setup
    result = memberships_refresh(as_of=DAY1, customer_ids=[a.pk])
    assert result["counts"] == {high.pk: 1}
    assert CurrentMembership.objects.count() == 1


def either_bucket():
    """Busan, or service effort 8 or more: two branches, each its own reason."""
    return BucketFactory(
        name="Either",
        priority=1,
        rules={
            "op": "or",
            "conditions": [
                {"field": "city", "operator": "=", "value": "Busan"},
                {"field": "effort", "operator": ">=", "value": 8},
            ],
        },
    )


def test_or_rules_give_the_matching_branch_as_reason():
    bucket = either_bucket()
    customer = CustomerFactory(service_effort=9, city="Seoul")
    memberships_refresh(as_of=DAY1)
    found, reason = selectors.bucket_for_customer(customer)
    assert found == bucket
    assert "condition 2" in reason and "Service effort" in reason


@pytest.mark.parametrize("scoped", [False, True])
def test_a_new_reason_in_the_same_bucket_keeps_since_and_history(scoped):
    bucket = either_bucket()
    customer = CustomerFactory(service_effort=9, city="Seoul")
    other = CustomerFactory(service_effort=9, city="Seoul")
    memberships_refresh(as_of=DAY1)
    assert "condition 2" in current(customer).reason
    customer.city, customer.service_effort = "Busan", 1
    customer.save(update_fields=["city", "service_effort"])
    scope = {"customer_ids": [customer.pk]} if scoped else {}
    result = memberships_refresh(as_of=DAY2, **scope)
    assert result["entered"] == 0 and result["left"] == 0
    row = current(customer)
    assert row.bucket == bucket and row.since == DAY1
    assert "condition 1" in row.reason and "City" in row.reason
    assert [
        (m.bucket, m.entered_on, m.left_on) for m in selectors.membership_history(customer)
    ] == [(bucket, DAY1, None)]
    assert "condition 2" in current(other).reason and current(other).since == DAY1


def test_a_refresh_of_everyone_repairs_stale_bucket_copies(setup):
    """A metrics row made after the customer's last evaluation (bucket empty) gets the bucket
    even though the membership itself does not change."""
    high, seoul, a, b, c = setup
    metrics_refresh(as_of=DAY1)
    memberships_refresh(as_of=DAY1)
    assert CustomerMetrics.objects.get(customer=a).bucket_id == high.pk
    CustomerMetrics.objects.filter(customer=a).update(bucket_id=None)
    result = memberships_refresh(as_of=DAY2)
    assert result["entered"] == 0 and result["left"] == 0
    assert CustomerMetrics.objects.get(customer=a).bucket_id == high.pk
    assert current(a).since == DAY1
    assert BucketMembership.objects.filter(customer=a).count() == 1


def test_bucket_with_rules_that_no_longer_validate_is_skipped(setup):
    high, seoul, a, b, c = setup
    type(high).objects.filter(pk=high.pk).update(rules=rule("gone_field", "=", 1))
    result = memberships_refresh(as_of=DAY1)
    assert result["skipped"] == [high.pk]
    assert current(a).bucket == seoul


def test_bucket_for_customer_before_any_refresh():
    customer = CustomerFactory()
    assert selectors.bucket_for_customer(customer) == (None, "Not evaluated yet")


def test_no_buckets_means_everyone_unsegmented():
    CustomerFactory.create_batch(3)
    result = memberships_refresh(as_of=DAY1)
    assert result["counts"] == {None: 3}


N_CONCURRENT = 5000


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_do_not_interleave():
    """Two real connections released together: the advisory lock serialises them, so the
    one-open-row-per-customer constraint never fires and the history is written once."""
    import threading

    from django.db import connection

    BucketFactory(name="High effort", priority=1, rules=rule("effort", ">=", 7))
    from crm.models import Customer

    Customer.objects.bulk_create(
        Customer(first_name=f"c{i}", service_effort=9) for i in range(N_CONCURRENT)
    )
    barrier = threading.Barrier(2)
    errors, results = [], []

    def work():
        try:
            barrier.wait(timeout=10)
            results.append(memberships_refresh(as_of=DAY1))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert sorted(r["entered"] for r in results) == [0, N_CONCURRENT]
    assert BucketMembership.objects.count() == N_CONCURRENT


def test_key_lookups_set_and_restore_the_planner_settings():
    from django.db import connection

    from crm.metrics import key_lookups

    def settings(cur):
        cur.execute(
            "SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin'), "
            "current_setting('enable_nestloop'), current_setting('enable_seqscan')"
        )
        return cur.fetchone()

    with connection.cursor() as cur:
        cur.execute("SET LOCAL enable_nestloop = off")
        before = settings(cur)
        with key_lookups(cur, strict=True):
            assert settings(cur) == ("off", "off", "on", "off")
        assert settings(cur) == before == ("on", "on", "off", "on")
        with key_lookups(cur):
            assert settings(cur) == ("off", "off", "off", "on")
        assert settings(cur) == before
