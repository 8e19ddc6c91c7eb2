"""crm.metrics.metrics_refresh against hand-computed figures (domain.md "Money", "Status")."""

import datetime as dt
import importlib
import random
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from crm import metrics
from crm.metrics import metrics_refresh
from crm.models import (
    CohortContribution,
    Customer,
    CustomerMetrics,
    CustomerStatus,
    Interaction,
    MetricsRefresh,
    Order,
)
from crm.tests.factories import (
    CustomerFactory,
    InteractionFactory,
    OrderFactory,
    SupportUserFactory,
)

pytestmark = pytest.mark.django_db

AS_OF = dt.date(2026, 6, 30)


def at(day: str, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(
        dt.date.fromisoformat(day), dt.time(hour), tzinfo=timezone.get_default_timezone()
    )


def order(customer, day, revenue, cost, **kw):
    return OrderFactory(
        customer=customer,
        placed_at=at(day),
        revenue=Decimal(revenue),
        cost_of_goods=Decimal(cost),
        **kw,
    )


def test_a_regular_customer_hand_computed():
    c = CustomerFactory(acquisition_date=dt.date(2023, 12, 1))
    order(c, "2024-01-01", "1000", "500", channel="online", category="")
    order(c, "2025-12-01", "50", "20", channel="store", category="bags")
    order(c, "2026-03-01", "200", "150", channel="store", category="shoes")
    order(c, "2026-05-01", "60", "30", channel="store", category="bags", brand="Y")
    order(c, "2026-06-20", "100", "70", channel="online", category="shoes", brand="X")
    order(c, "2026-07-05", "999", "1", channel="phone")  # after as_of: ignored
    pricey = SupportUserFactory(hourly_cost=Decimal("60.00"))
    InteractionFactory(customer=c, staff=pricey, minutes=30, occurred_at=at("2026-06-01"))
    InteractionFactory(customer=c, minutes=15, occurred_at=at("2025-01-01"))  # default 40/h
    InteractionFactory(customer=c, minutes=99, occurred_at=at("2026-07-01"))  # after as_of

    assert metrics_refresh(as_of=AS_OF) == 1
    m = CustomerMetrics.objects.get(customer=c)
    assert (m.order_count, m.orders_window) == (5, 4)
    assert m.first_order_at == at("2024-01-01") and m.last_order_at == at("2026-06-20")
    assert m.status_from == dt.date(2026, 6, 20)
    assert m.acquisition_month == dt.date(2023, 12, 1)
    assert m.revenue_window == Decimal("410.00") and m.margin_window == Decimal("140.00")
    assert m.revenue_lifetime == Decimal("1410.00") and m.margin_lifetime == Decimal("640.00")
    assert m.aov == Decimal("282.00")
    assert m.buyer_type == "regular"
    assert m.preferred_channel == "store"
    assert m.favourite_category == "bags"  # 2 bags, 2 shoes: ties go alphabetically
    assert m.favourite_brand == "X"
    assert (m.minutes_window, m.minutes_lifetime) == (30, 45)
    assert m.cost_to_serve_window == Decimal("30.00")
    assert m.cost_to_serve_lifetime == Decimal("40.00")
    assert m.contribution_window == Decimal("110.00")
    assert m.contribution_lifetime == Decimal("600.00")
    assert m.status == "active"
    assert (m.value_decile, m.suggested_effort) == (1, 1)


def test_buyer_types():
    none = CustomerFactory()
    first = CustomerFactory()
    order(first, "2026-06-01", "10", "5")
    occasional = CustomerFactory()
    for day in ("2026-01-01", "2026-02-01", "2026-03-01", "2025-06-30"):  # only 3 in 365 days
        order(occasional, day, "10", "5")
    regular = CustomerFactory()
    for day in ("2025-07-01", "2026-02-01", "2026-03-01", "2026-04-01"):
        order(regular, day, "10", "5")
    metrics_refresh(as_of=AS_OF)
    types = dict(CustomerMetrics.objects.values_list("customer_id", "buyer_type"))
    assert types == {
        none.id: "none",
        first.id: "first_time",
        occasional.id: "occasional",
        regular.id: "regular",
    }
    assert CustomerMetrics.objects.get(customer=none).aov is None
    assert CustomerMetrics.objects.get(customer=none).last_order_at is None


@pytest.mark.parametrize(
    "last_order, expected",
    [
        ("2026-04-01", "active"),  # 90 days
        ("2026-03-31", "at_risk"),  # 91 days
        ("2026-01-01", "at_risk"),  # 180 days
        ("2025-12-31", "churned"),  # 181 days
    ],
)
def test_status_thresholds_by_last_order(last_order, expected):
    c = CustomerFactory()
    order(c, last_order, "10", "5")
    metrics_refresh(as_of=AS_OF)
    c.refresh_from_db()
    assert c.metrics.status == expected
    assert c.status == expected  # copied onto the customer


def test_status_without_orders_and_cancelled():
    fresh = CustomerFactory(acquisition_date=dt.date(2026, 5, 1))
    old = CustomerFactory(acquisition_date=dt.date(2025, 1, 1))
    no_dates = CustomerFactory(acquisition_date=None, created_at=at("2026-02-01"))
    cancelled = CustomerFactory(cancelled_at=at("2026-06-01"))
    order(cancelled, "2026-06-25", "10", "5")
    metrics_refresh(as_of=AS_OF)
    status = dict(CustomerMetrics.objects.values_list("customer_id", "status"))
    assert status == {
        fresh.id: "active",
        old.id: "churned",
        no_dates.id: "at_risk",
        cancelled.id: "churned",
    }


def test_value_deciles_and_suggested_effort():
    customers = CustomerFactory.create_batch(20)
    for n, c in enumerate(customers):  # margin n*10: the last customer is the most valuable
        order(c, "2026-06-01", str(100 + n * 10), "100")
    # Ten customers served, 10..100 minutes; the other ten never served.
    for n, c in enumerate(customers[:10]):
        InteractionFactory(customer=c, minutes=(n + 1) * 10, occurred_at=at("2026-06-02"))
    metrics_refresh(as_of=AS_OF)
    got = {m.customer_id: m for m in CustomerMetrics.objects.all()}
    ranked = sorted(customers, key=lambda c: -got[c.id].contribution_lifetime)
    assert [got[c.id].value_decile for c in ranked] == [d for d in range(1, 11) for _ in (0, 1)]
    assert [got[c.id].suggested_effort for c in customers[:10]] == list(range(1, 11))
    assert all(got[c.id].suggested_effort is None for c in customers[10:])


def test_incremental_limits_the_aggregation_and_moves_status_by_date():
    a, b = CustomerFactory(), CustomerFactory()
    order(a, "2026-06-01", "100", "50")
    order(b, "2026-04-01", "100", "50")  # 90 days before AS_OF: active, at risk a day later
    metrics_refresh(as_of=AS_OF)
    assert CustomerMetrics.objects.get(customer=b).status == "active"
    untouched = CustomerMetrics.objects.get(customer=a).refreshed_at
    order(b, "2026-03-15", "100", "50")
    order(a, "2026-06-15", "100", "50")
    assert metrics_refresh(as_of=AS_OF + dt.timedelta(days=1), customer_ids=[b.id]) == 1
    ma, mb = CustomerMetrics.objects.get(customer=a), CustomerMetrics.objects.get(customer=b)
    assert ma.order_count == 1 and mb.order_count == 2  # a was not aggregated again...
    assert ma.refreshed_at == untouched  # ...nor rewritten
    assert mb.status == "at_risk"
    b.refresh_from_db()
    assert b.status == "at_risk"
    # Each refresh is recorded, newest first: the high-value list dates its deciles by it.
    assert list(MetricsRefresh.objects.values_list("as_of", "full", "customers")) == [
        (AS_OF + dt.timedelta(days=1), False, 1),
        (AS_OF, True, 2),
    ]


def test_status_moves_for_customers_outside_the_scope():
    c = CustomerFactory()
    order(c, "2026-04-01", "100", "50")
    metrics_refresh(as_of=AS_OF)
    metrics_refresh(as_of=AS_OF + dt.timedelta(days=1), customer_ids=[])
    c.refresh_from_db()
    assert c.metrics.status == c.status == "at_risk"


@pytest.fixture(params=["index_order", "sorted"])
def payback_path(request, monkeypatch):
    """Both ways a full refresh computes payback on PostgreSQL: events read in index order with
    staff costs from an array, or sorted (staff ids too spread out for the array)."""
    if request.param == "sorted":
        monkeypatch.setattr(metrics, "STAFF_ARRAY_MAX_SPAN", -1)
    return request.param


def test_payback_hand_computed(payback_path):
    c = CustomerFactory(acquisition_date=dt.date(2026, 1, 1), acquisition_cost=Decimal("100"))
    order(c, "2025-12-20", "500", "0")  # before acquisition: never counts
    order(c, "2026-01-10", "60", "0")  # cumulative 60
    InteractionFactory(customer=c, minutes=30, occurred_at=at("2026-01-20"))  # 40/h: 40
    order(c, "2026-02-01", "70", "0")  # 110 >= 100 on day 31
    never = CustomerFactory(acquisition_date=dt.date(2026, 1, 1), acquisition_cost=Decimal("1000"))
    order(never, "2026-01-10", "60", "0")
    same_day = CustomerFactory(acquisition_date=dt.date(2026, 1, 1), acquisition_cost=Decimal("50"))
    OrderFactory(customer=same_day, placed_at=at("2026-01-05", 9), revenue=60, cost_of_goods=0)
    # The same day's interaction takes it back below the CAC: not paid back that day.
    InteractionFactory(customer=same_day, minutes=30, occurred_at=at("2026-01-05", 15))
    OrderFactory(customer=same_day, placed_at=at("2026-01-07"), revenue=20, cost_of_goods=0)
    metrics_refresh(as_of=AS_OF)
    days = dict(CustomerMetrics.objects.values_list("customer_id", "payback_days"))
    assert days == {c.id: 31, never.id: None, same_day.id: 6}


def test_payback_and_cost_to_serve_read_each_staff_members_hourly_cost(payback_path):
    cheap = SupportUserFactory(hourly_cost=Decimal("20"))
    SupportUserFactory().delete()  # a gap in the staff ids
    dear = SupportUserFactory(hourly_cost=Decimal("100"))
    default = SupportUserFactory(hourly_cost=None)  # the default rate: 40/h
    c = CustomerFactory(acquisition_date=dt.date(2026, 1, 1), acquisition_cost=Decimal("100"))
    order(c, "2026-01-10", "120", "0")
    InteractionFactory(customer=c, staff=dear, minutes=30, occurred_at=at("2026-01-10", 15))
    # 120 - 50 = 70 at the end of day 9 (at 40/h it would be 100: paid back)
    InteractionFactory(customer=c, staff=cheap, minutes=15, occurred_at=at("2026-01-12"))
    order(c, "2026-01-15", "35", "0")  # 70 - 5 + 35 = 100 on day 14 (at 40/h: 95)
    d = CustomerFactory(acquisition_date=dt.date(2026, 1, 1), acquisition_cost=Decimal("10"))
    order(d, "2026-01-03", "30", "0")
    InteractionFactory(customer=d, staff=default, minutes=30, occurred_at=at("2026-01-03", 13))
    metrics_refresh(as_of=AS_OF)
    days = dict(CustomerMetrics.objects.values_list("customer_id", "payback_days"))
    assert days == {c.id: 14, d.id: 2}
    costs = dict(CustomerMetrics.objects.values_list("customer_id", "cost_to_serve_lifetime"))
    assert costs == {c.id: Decimal("55.00"), d.id: Decimal("20.00")}  # 50 + 5; 20


def _cells():
    return {(cell.cohort, cell.month): cell.units for cell in CohortContribution.objects.all()}


def test_cohort_table_incremental_equals_full():
    a = CustomerFactory(acquisition_date=dt.date(2026, 1, 15))
    b = CustomerFactory(acquisition_date=None)  # cohort = month of the first order
    c = CustomerFactory(acquisition_date=dt.date(2026, 2, 1))
    order(a, "2026-01-20", "100", "40")
    order(b, "2026-03-05", "50", "20")
    InteractionFactory(customer=a, minutes=15, occurred_at=at("2026-02-03"))
    metrics_refresh(as_of=AS_OF)
    assert _cells()[(dt.date(2026, 1, 1), dt.date(2026, 1, 1))] == 60 * 6000
    assert _cells()[(dt.date(2026, 1, 1), dt.date(2026, 2, 1))] == -10 * 6000  # 15 min at 40/h
    watermarks = {"order": Order.objects.latest("id").id, "interaction": 0}
    watermarks["interaction"] = Interaction.objects.latest("id").id
    order(a, "2026-06-01", "30", "10")
    order(b, "2026-02-10", "10", "5")  # earlier than b's first order: b's cohort moves
    InteractionFactory(customer=c, minutes=7, occurred_at=at("2026-05-05"))
    a.acquisition_date = a.acquisition_date  # unchanged
    Customer.objects.filter(pk=c.pk).update(acquisition_date=dt.date(2026, 3, 3))
    metrics_refresh(as_of=AS_OF, customer_ids=[a.id, b.id, c.id], events_after=watermarks)
    incremental = _cells()
    metrics_refresh(as_of=AS_OF)
    full = _cells()
    assert {k: v for k, v in incremental.items() if v} == {k: v for k, v in full.items() if v}
    assert (dt.date(2026, 2, 1), dt.date(2026, 3, 1)) in full  # b moved to February


def test_meanwhile_runs_once_after_the_metrics_and_before_the_cohort_table():
    a = CustomerFactory(acquisition_date=dt.date(2026, 1, 15))
    order(a, "2026-01-20", "100", "40")
    seen = []

    def meanwhile():
        seen.append(
            (
                CustomerMetrics.objects.get(customer=a).margin_lifetime,
                CohortContribution.objects.count(),
            )
        )

    metrics_refresh(as_of=AS_OF, meanwhile=meanwhile)
    assert seen == [(Decimal("60.00"), 0)]  # the metrics written, the cohort table not yet
    assert _cells()[(dt.date(2026, 1, 1), dt.date(2026, 1, 1))] == 60 * 6000
    # An incremental refresh calls it too, once.
    metrics_refresh(as_of=AS_OF, customer_ids=[a.id], meanwhile=meanwhile)
    assert len(seen) == 2


def test_refresh_twice_is_stable_and_refuses_a_non_date():
    c = CustomerFactory()
    order(c, "2026-06-01", "100", "50")
    metrics_refresh(as_of=AS_OF)
    first = CustomerMetrics.objects.values().get(customer=c)
    metrics_refresh(as_of=AS_OF)
    second = CustomerMetrics.objects.values().get(customer=c)
    first.pop("refreshed_at"), second.pop("refreshed_at")
    assert first == second
    assert CustomerMetrics.objects.count() == 1
    with pytest.raises(ValueError, match="as_of"):
        metrics_refresh(as_of="2026-06-30")


def test_refresh_is_constant_in_queries():
    from django.test.utils import CaptureQueriesContext

    counts = []
    for _size in (15, 30):
        for c in CustomerFactory.create_batch(15):
            order(c, "2026-06-01", "100", "50")
        with CaptureQueriesContext(connection) as queries:
            metrics_refresh(as_of=AS_OF)
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 55  # the same statements whatever the number of customers


def test_recheck_on_is_the_first_date_the_row_goes_stale():
    # window (365 days) on AS_OF 2026-06-30 starts on 2025-07-01
    windowed = CustomerFactory()
    order(windowed, "2025-07-01", "10", "5")  # leaves the window on 2026-07-01
    InteractionFactory(customer=windowed, minutes=5, occurred_at=at("2026-08-01"))
    year_only = CustomerFactory(acquisition_date=dt.date(2026, 9, 1))
    order(year_only, "2025-08-15", "10", "5")  # leaves window and year on 2026-08-15
    future = CustomerFactory()
    order(future, "2024-01-01", "10", "5")  # outside every window
    InteractionFactory(customer=future, minutes=5, occurred_at=at("2026-07-20"))
    acquired_later = CustomerFactory(acquisition_date=dt.date(2026, 7, 10))
    settled = CustomerFactory(acquisition_date=dt.date(2024, 1, 1))
    order(settled, "2024-02-01", "10", "5")
    metrics_refresh(as_of=AS_OF)
    got = dict(CustomerMetrics.objects.values_list("customer_id", "recheck_on"))
    assert got == {
        windowed.id: dt.date(2026, 7, 1),
        year_only.id: dt.date(2026, 8, 15),
        future.id: dt.date(2026, 7, 20),
        acquired_later.id: dt.date(2026, 7, 10),
        settled.id: None,  # nothing will change with time alone
    }
    # Scoped refreshes compute the same (PostgreSQL: per-customer lookups instead of joins).
    CustomerMetrics.objects.update(recheck_on=None)
    metrics_refresh(as_of=AS_OF, customer_ids=list(got))
    assert dict(CustomerMetrics.objects.values_list("customer_id", "recheck_on")) == got


def _watermarks():
    return {
        "order": Order.objects.latest("id").id,
        "interaction": Interaction.objects.latest("id").id,
    }


def test_incremental_payback_keeps_a_settled_day_and_recomputes_after_new_events():
    cac = {"acquisition_date": dt.date(2026, 1, 1), "acquisition_cost": Decimal("100")}
    kept, later, backdated, same_day, recosted = (CustomerFactory(**cac) for _ in range(5))
    for c in (kept, later, backdated, same_day, recosted):
        order(c, "2026-01-11", "150", "0")  # paid back on day 10
    InteractionFactory(customer=kept, minutes=5, occurred_at=at("2026-02-01"))
    metrics_refresh(as_of=AS_OF)
    assert set(CustomerMetrics.objects.values_list("payback_days", flat=True)) == {10}
    watermarks = _watermarks()
    # New events after the payback day cannot move it, even a costly one.
    InteractionFactory(customer=later, minutes=600, occurred_at=at("2026-01-12"))
    # A new (back-dated) interaction before the payback day costs 60: paid back only later.
    InteractionFactory(customer=backdated, minutes=90, occurred_at=at("2026-01-05"))
    order(backdated, "2026-03-02", "10", "0")
    # On the payback day itself: the day's total falls below the cost (150 - 80).
    InteractionFactory(customer=same_day, minutes=120, occurred_at=at("2026-01-11", hour=18))
    Customer.objects.filter(pk=recosted.pk).update(acquisition_cost=Decimal("200"))
    ids = [kept.id, later.id, backdated.id, same_day.id, recosted.id]
    metrics_refresh(as_of=AS_OF, customer_ids=ids, events_after=watermarks)
    incremental = dict(CustomerMetrics.objects.values_list("customer_id", "payback_days"))
    assert incremental == {
        kept.id: 10,
        later.id: 10,
        backdated.id: 60,
        same_day.id: None,
        recosted.id: None,
    }
    metrics_refresh(as_of=AS_OF)
    assert dict(CustomerMetrics.objects.values_list("customer_id", "payback_days")) == incremental


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_rank_repair_equals_a_full_rerank(seed, monkeypatch):
    import random

    from crm import metrics

    monkeypatch.setattr(metrics, "RANK_REPAIR_MIN_ROWS", 10)
    repairs, repair = [], metrics._ranks_repair
    monkeypatch.setattr(
        metrics,
        "_ranks_repair",
        lambda *args, **kw: repairs.append(repair(*args, **kw)) or repairs[-1],
    )
    rnd = random.Random(seed)
    staff = SupportUserFactory()
    customers = CustomerFactory.create_batch(60)

    def activity(n):
        for _ in range(n):
            c = rnd.choice(customers)
            day = AS_OF - dt.timedelta(days=rnd.randrange(400))
            if rnd.random() < 0.5:  # many ties: a few distinct margins and minutes
                order(c, day.isoformat(), str(rnd.choice([10, 20, 30, 50])), "0")
            else:
                minutes = rnd.choice([5, 10, 15])
                InteractionFactory(
                    customer=c, staff=staff, minutes=minutes, occurred_at=at(day.isoformat())
                )

    activity(150)
    metrics_refresh(as_of=AS_OF)
    from crm.models import RankBoundary

    assert RankBoundary.objects.count() == 18
    for _round in range(3):
        watermarks = _watermarks()
        touched = rnd.sample(customers, 15)
        for c in touched:
            if rnd.random() < 0.5:
                order(c, AS_OF.isoformat(), *rnd.choice([("10", "50"), ("15", "0"), ("200", "0")]))
            else:
                InteractionFactory(
                    customer=c, staff=staff, minutes=60, occurred_at=at(AS_OF.isoformat())
                )
        customers += CustomerFactory.create_batch(2)
        ids = [c.id for c in touched] + [c.id for c in customers[-2:]]
        metrics_refresh(as_of=AS_OF, customer_ids=ids, events_after=watermarks)
        fields = ("customer_id", "value_decile", "suggested_effort")
        repaired = sorted(CustomerMetrics.objects.values_list(*fields))
        boundaries = sorted(
            RankBoundary.objects.values_list("kind", "tile", "value", "customer_id")
        )
        CustomerMetrics.objects.update(value_decile=None, suggested_effort=None)
        monkeypatch.setattr(metrics, "RANK_REPAIR_MIN_ROWS", 10**9)  # the sort (NTILE)
        metrics_refresh(as_of=AS_OF)
        monkeypatch.setattr(metrics, "RANK_REPAIR_MIN_ROWS", 10)
        assert sorted(CustomerMetrics.objects.values_list(*fields)) == repaired
        assert (
            sorted(RankBoundary.objects.values_list("kind", "tile", "value", "customer_id"))
            == boundaries
        )
    assert repairs == [True, True, True]  # the scoped refreshes repaired, not re-ranked


@pytest.mark.parametrize("seed", [1, 2])
def test_a_full_rerank_along_the_indexes_equals_the_sort(seed, monkeypatch):
    """A full refresh ranks by boundaries walked from the first row (none stored yet), then
    moved from the stored ones; both give every row the NTILE ranks of the sort."""
    import random

    from crm import metrics
    from crm.models import RankBoundary

    rnd = random.Random(seed)
    staff = SupportUserFactory()
    customers = CustomerFactory.create_batch(45)
    fields = ("customer_id", "value_decile", "suggested_effort")
    bounds = ("kind", "tile", "value", "customer_id")
    used = []
    walked, moved = metrics._ranks_walked, metrics._boundaries_moved

    def spy(name, function):
        def spied(*args, **kw):
            result = function(*args, **kw)
            used.append((name, result is not None))
            return result

        return spied

    monkeypatch.setattr(metrics, "_ranks_walked", spy("walked", walked))
    monkeypatch.setattr(metrics, "_boundaries_moved", spy("moved", moved))
    for _round in range(3):
        for _ in range(60):  # many ties: a few distinct margins and minutes
            c, day = rnd.choice(customers), AS_OF - dt.timedelta(days=rnd.randrange(400))
            if rnd.random() < 0.5:
                order(c, day.isoformat(), str(rnd.choice([10, 20, 30])), "0")
            else:
                InteractionFactory(
                    customer=c, staff=staff, minutes=rnd.choice([5, 10]), occurred_at=at(str(day))
                )
        monkeypatch.setattr(metrics, "RANK_REPAIR_MIN_ROWS", 10)
        metrics_refresh(as_of=AS_OF)
        along = sorted(CustomerMetrics.objects.values_list(*fields))
        along_bounds = sorted(RankBoundary.objects.values_list(*bounds))
        monkeypatch.setattr(metrics, "RANK_REPAIR_MIN_ROWS", 10**9)  # the sort (NTILE)
        CustomerMetrics.objects.update(value_decile=None, suggested_effort=None)
        metrics_refresh(as_of=AS_OF)
        assert sorted(CustomerMetrics.objects.values_list(*fields)) == along
        assert sorted(RankBoundary.objects.values_list(*bounds)) == along_bounds
        assert len(along_bounds) == 18  # the next round moves these
    # Along the indexes in rounds 1-3 (walked, then moved); the sort's runs find too few rows.
    assert used == [("walked", True)] + [("moved", False), ("moved", True)] * 2 + [("moved", False)]


def test_migration_dates_metrics_refreshed_before_it():
    """crm 0015 records one refresh for metrics written before refreshes were recorded."""
    from django.apps import apps

    migration = importlib.import_module("crm.migrations.0015_metrics_refresh")
    migration.record_last_refresh(apps, None)
    assert not MetricsRefresh.objects.exists()  # no metrics: nothing to date
    c = CustomerFactory()
    order(c, "2026-06-01", "100", "50")
    metrics_refresh(as_of=AS_OF)
    MetricsRefresh.objects.all().delete()
    newest = timezone.now() - dt.timedelta(days=3)
    CustomerMetrics.objects.update(refreshed_at=newest)
    migration.record_last_refresh(apps, None)
    recorded = MetricsRefresh.objects.get()
    assert (recorded.as_of, recorded.full, recorded.customers) == (
        timezone.localdate(newest),
        False,
        None,
    )
    assert recorded.finished_at == newest


def _second_connections_pass(cur, params: dict, *, staff_array: bool) -> set:
    """Run the second connection's pass (_payback_cohorts_sql) into temporary table `pass`,
    then its day-by-day sums for the dips (_payback_dips_sql); return the dips' customers."""
    cur.execute(
        "CREATE TEMPORARY TABLE pass AS " + metrics._payback_cohorts_sql(staff_array=staff_array),
        params,
    )
    cur.execute("SELECT customer_id FROM pass WHERE dip")
    dips = {row[0] for row in cur.fetchall()}
    for sql in metrics._payback_dips_sql("pass", staff_array=staff_array):
        cur.execute(sql, params)
    return dips


@pytest.mark.parametrize("staff_array", [True, False])
def test_one_pass_payback_days_and_cohort_cells_match_the_separate_statements(staff_array):
    """The second connection's single pass of a full concurrent refresh (payback days and
    cohort cells together, _payback_cohorts_sql and _undated_cohorts_sql), run here on the
    hand-computed cases of test_payback_hand_computed plus events before acquisition, after
    as_of and without an acquisition date."""
    c = CustomerFactory(acquisition_date=dt.date(2026, 1, 1), acquisition_cost=Decimal("100"))
    order(c, "2025-12-20", "500", "0")  # before acquisition: a cohort cell, no payback
    order(c, "2026-01-10", "60", "0")
    InteractionFactory(customer=c, minutes=30, occurred_at=at("2026-01-20"))
    order(c, "2026-02-01", "70", "0")  # 110 >= 100 on day 31
    never = CustomerFactory(acquisition_date=dt.date(2026, 1, 1), acquisition_cost=Decimal("1000"))
    order(never, "2026-01-10", "60", "0")
    order(never, "2026-07-02", "5000", "0")  # after as_of: a cohort cell, no payback
    same_day = CustomerFactory(acquisition_date=dt.date(2026, 1, 1), acquisition_cost=Decimal("50"))
    OrderFactory(customer=same_day, placed_at=at("2026-01-05", 9), revenue=60, cost_of_goods=0)
    InteractionFactory(customer=same_day, minutes=30, occurred_at=at("2026-01-05", 15))
    OrderFactory(customer=same_day, placed_at=at("2026-01-07"), revenue=20, cost_of_goods=0)
    last_day = CustomerFactory(acquisition_date=dt.date(2026, 6, 1), acquisition_cost=Decimal("10"))
    order(last_day, "2026-06-30", "15", "0")  # paid back on as_of itself, its last event
    undated = CustomerFactory(acquisition_date=None, acquisition_cost=Decimal("10"))
    order(undated, "2026-03-05", "50", "20")
    InteractionFactory(customer=undated, minutes=15, occurred_at=at("2026-04-03"))
    params = metrics.metrics_params(AS_OF)
    with connection.cursor() as cur:
        dips = _second_connections_pass(cur, params, staff_array=staff_array)
        cur.execute("SELECT customer_id, cohort, month, days, units FROM pass")
        rows = cur.fetchall()
        cur.execute(metrics._undated_cohorts_sql(staff_array=staff_array), params)
        undated_cells = cur.fetchall()
    assert dips == {same_day.id}  # left to the day-by-day sums
    days = {customer: d for customer, _cohort, _month, d, _units in rows if customer is not None}
    # The undated customer is not in this pass: it cannot pay back.
    assert days == {c.id: 31, never.id: None, same_day.id: 6, last_day.id: 29}
    cells = {}
    for cohort, month, units in [(r[1], r[2].date(), r[4]) for r in rows if r[0] is None]:
        cells[cohort, month] = cells.get((cohort, month), 0) + units
    for cohort, month, units in undated_cells:
        cells[cohort, month] = cells.get((cohort, month), 0) + units
    metrics_refresh(as_of=AS_OF)  # on one connection: the cohort table from _cohorts_sql
    expected = {(cell.cohort, cell.month): cell.units for cell in CohortContribution.objects.all()}
    assert cells == expected
    assert cells[dt.date(2026, 3, 1), dt.date(2026, 4, 1)] == -10 * 6000  # undated: 15 min
    assert cells[dt.date(2026, 1, 1), dt.date(2026, 7, 1)] == 5000 * 6000  # after as_of
    stored = dict(CustomerMetrics.objects.values_list("customer_id", "payback_days"))
    assert {k: v for k, v in stored.items() if k in days} == days


@pytest.mark.parametrize("scoped", [False, True])
def test_preferred_channel_is_the_most_frequent_with_ties_to_the_first_alphabetically(scoped):
    picks = {}
    for name, channels in {
        "tie_online_phone": ["online", "phone"],
        "tie_phone_store": ["store", "phone", "store", "online", "phone"],
        "store": ["online", "store", "store", "store"],
        "all_three_tied": ["store", "phone", "online"],
        "phone": ["phone"],
    }.items():
        customer = CustomerFactory()
        for day, channel in enumerate(channels, start=1):
            order(customer, f"2026-05-{day:02d}", "10", "5", channel=channel)
        picks[customer.id] = name
    order(customer, "2026-07-02", "10", "5", channel="store")  # after as_of: not counted
    none = CustomerFactory()  # no orders
    picks[none.id] = "none"
    ids = list(picks) if scoped else None
    metrics_refresh(as_of=AS_OF, customer_ids=ids)
    got = {
        picks[m.customer_id]: m.preferred_channel
        for m in CustomerMetrics.objects.filter(customer_id__in=picks)
    }
    assert got == {
        "tie_online_phone": "online",
        "tie_phone_store": "phone",
        "store": "store",
        "all_three_tied": "online",
        "phone": "phone",
        "none": "",
    }


def test_the_concurrent_full_staging_keeps_only_the_rows_to_write():
    """_stage_sql(changed_only=True), as a full concurrent refresh stages: after a refresh,
    nothing; then a customer with a new order, one without a metrics row yet, and one whose
    status copy in Customer differs, each for that reason alone."""
    quiet, ordered, copy_off = (CustomerFactory() for _ in range(3))
    for customer in (quiet, ordered, copy_off):
        order(customer, "2026-06-01", "100", "40")
    metrics_refresh(as_of=AS_OF)
    fresh = CustomerFactory()  # no metrics row yet

    def staged() -> dict:
        sql = metrics._stage_sql(scoped=False, compare_stored=True, ranged=True, changed_only=True)
        ids = Customer.objects.values_list("id", flat=True)
        params = {
            **metrics.metrics_params(AS_OF),
            "stage_from": min(ids),
            "stage_to": max(ids) + 1,
        }
        with connection.cursor() as cur:
            cur.execute(sql, params)
            names = [column.name for column in cur.description]
            return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}

    assert list(staged()) == [fresh.id]
    order(ordered, "2026-06-20", "50", "10")
    Customer.objects.filter(pk=copy_off.pk).update(status=CustomerStatus.CHURNED)
    rows = staged()
    assert sorted(rows) == sorted([fresh.id, ordered.id, copy_off.id])
    assert rows[fresh.id]["old_state"] == 0
    assert rows[ordered.id]["old_state"] == 2 and rows[ordered.id]["order_count"] == 2
    assert rows[copy_off.id]["old_state"] == 1
    assert rows[copy_off.id]["status"] != rows[copy_off.id]["customer_status"]


@pytest.mark.parametrize("staff_array", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_pass_payback_days_equal_the_day_by_day_sums_on_random_events(seed, staff_array):
    """The second connection's payback days (the crossings of _payback_cohorts_sql, and
    _payback_dips_sql for a dip on the day of the first) against the exact day-by-day sums of
    _payback_days_sql, for random customers whose running sums cross their targets up and
    down, often within a day and at the same instant, with events before acquisition and
    after as_of."""
    rnd = random.Random(seed)
    staff = [
        SupportUserFactory(hourly_cost=Decimal("30")),
        SupportUserFactory(hourly_cost=Decimal("90")),
    ]
    customers = [
        CustomerFactory(
            acquisition_date=dt.date(2026, 1, rnd.randrange(1, 8)),
            acquisition_cost=Decimal(rnd.randrange(10, 80)),
        )
        for _ in range(60)
    ]
    for customer in customers:
        for _ in range(rnd.randrange(3, 16)):
            day = dt.date(2025, 12, 28) + dt.timedelta(days=rnd.randrange(0, 16))
            if rnd.random() < 0.05:
                day = dt.date(2026, 7, 1) + dt.timedelta(days=rnd.randrange(0, 5))  # after as_of
            hour = rnd.choice([0, 9, 9, 9, 14, 23])  # nine o'clock: events at the same instant
            when = dt.datetime.combine(day, dt.time(hour), tzinfo=timezone.get_default_timezone())
            if rnd.random() < 0.5:
                margin = rnd.randrange(-30, 90)
                OrderFactory(
                    customer=customer,
                    placed_at=when,
                    revenue=Decimal(max(margin, 0) + 10),
                    cost_of_goods=Decimal(max(margin, 0) + 10 - margin),
                )
            else:
                InteractionFactory(
                    customer=customer,
                    staff=rnd.choice(staff),
                    minutes=rnd.randrange(10, 90),
                    occurred_at=when,
                )
    # And one dip for certain: 60 at nine reaches 50, 30 minutes at 40/h leave 40 by night.
    dip = CustomerFactory(acquisition_date=dt.date(2026, 1, 1), acquisition_cost=Decimal("50"))
    OrderFactory(customer=dip, placed_at=at("2026-01-05", 9), revenue=60, cost_of_goods=0)
    InteractionFactory(customer=dip, minutes=30, occurred_at=at("2026-01-05", 15))
    OrderFactory(customer=dip, placed_at=at("2026-01-07"), revenue=20, cost_of_goods=0)
    params = metrics.metrics_params(AS_OF)
    with connection.cursor() as cur:
        dips = len(_second_connections_pass(cur, params, staff_array=staff_array))
        cur.execute("SELECT customer_id, days FROM pass WHERE customer_id IS NOT NULL")
        got = {customer: days for customer, days in cur.fetchall() if days is not None}
        everyone = (
            f"SELECT id AS customer_id, acquisition_date, acquisition_cost "  # noqa: S608
            f"FROM {Customer._meta.db_table} WHERE acquisition_cost > 0"
        )
        cur.execute(metrics._payback_days_sql(everyone, lookups=True), params)
        expected = dict(cur.fetchall())
    assert got == expected
    assert expected[dip.id] == 6 and len(expected) >= 10 and dips >= 1
