"""The nightly ROI job: hand-computed snapshot figures, idempotency, atomicity, no overlap,
incremental == full."""

import datetime as dt
import random
import threading
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import DataError, connection, transaction
from django.utils import timezone

from crm import metrics as metrics_mod
from crm.metrics import metrics_refresh
from crm.models import CohortContribution, Customer, CustomerMetrics, Order, RankBoundary
from crm.tests.factories import (
    CustomerFactory,
    InteractionFactory,
    OrderFactory,
    SocialProfileFactory,
    SupportUserFactory,
)
from segments import jobs, selectors
from segments.jobs import roi_recalculate, touched_customer_ids
from segments.models import Bucket, CurrentMembership, JobRun, RoiSnapshot
from segments.selectors import RoiAggregates

AS_OF = dt.date(2026, 6, 30)
BIG_RULES = {"op": "and", "conditions": [{"field": "order_count", "operator": ">=", "value": 2}]}


def at(day: str, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(
        dt.date.fromisoformat(day), dt.time(hour), tzinfo=timezone.get_default_timezone()
    )


def order(customer, day, margin, revenue="500"):
    revenue = Decimal(revenue)
    return OrderFactory(
        customer=customer,
        placed_at=at(day),
        revenue=revenue,
        cost_of_goods=revenue - Decimal(margin),
    )


def big_bucket():
    return Bucket.objects.create(name="Big", priority=1, rules=BIG_RULES)


@pytest.fixture
def hand_case(db):
    """Big (order_count >= 2): A and B; Unsegmented: C. Staff cost 40/h by default."""
    bucket = big_bucket()
    a = CustomerFactory(acquisition_date=dt.date(2026, 1, 1), acquisition_cost=Decimal("100"))
    InteractionFactory(customer=a, minutes=60, occurred_at=at("2026-01-15"))  # -40
    order(a, "2026-02-01", "100")  # cumulative 60
    order(a, "2026-03-01", "50")  # cumulative 110 >= 100 on day 59
    b = CustomerFactory(acquisition_cost=None)
    InteractionFactory(customer=b, minutes=30, occurred_at=at("2026-04-01"))  # -20
    for day in ("2026-04-01", "2026-05-01", "2026-06-01"):
        order(b, day, "30")
    c = CustomerFactory(acquisition_date=dt.date(2026, 1, 1), acquisition_cost=Decimal("50"))
    order(c, "2026-06-01", "20")
    return bucket, a, b, c


@pytest.mark.django_db
def test_hand_computed_snapshot(hand_case):
    bucket, a, b, c = hand_case
    run = roi_recalculate(as_of=AS_OF)
    assert run.status == JobRun.Status.SUCCEEDED and run.mode == JobRun.Mode.FULL
    big = RoiSnapshot.objects.get(date=AS_OF, bucket=bucket)
    assert big.bucket_name == "Big" and big.customers == 2
    assert big.margin == Decimal("240.00") and big.cost_to_serve == Decimal("60.00")
    assert big.contribution == Decimal("180.00")
    assert big.roi == Decimal("3.0000")  # (240 - 60) / 60
    assert big.contribution_per_customer == Decimal("90.00")
    assert big.share_of_total == Decimal("0.9000")  # 180 of 200
    assert big.ltv_cac == Decimal("1.8000")  # lifetime contribution 180 / CAC 100
    assert big.payback_median_days == 59 and big.payback_share == Decimal("1.0000")
    assert big.churn_rate == Decimal("0.0000") and big.job_run == run
    rest = RoiSnapshot.objects.get(date=AS_OF, bucket__isnull=True)
    assert rest.customers == 1 and rest.contribution == Decimal("20.00")
    assert rest.roi is None  # cost to serve 0: empty, not zero or infinity
    assert rest.share_of_total == Decimal("0.1000")
    assert rest.ltv_cac == Decimal("0.4000")
    assert rest.payback_median_days is None and rest.payback_share == Decimal("0.0000")
    assert run.counts["snapshots"] == 2


@pytest.mark.django_db
def test_payback_median_over_customers_who_paid_back():
    for days_to_pay in (10, 20, 40, 50):
        cust = CustomerFactory(
            acquisition_date=dt.date(2026, 1, 1), acquisition_cost=Decimal("100")
        )
        order(cust, (dt.date(2026, 1, 1) + dt.timedelta(days=days_to_pay)).isoformat(), "100")
    never = CustomerFactory(acquisition_date=dt.date(2026, 1, 1), acquisition_cost=Decimal("100"))
    order(never, "2026-02-01", "10")
    roi_recalculate(as_of=AS_OF)
    rest = RoiSnapshot.objects.get(date=AS_OF, bucket__isnull=True)
    assert rest.payback_median_days == 30  # (20 + 40) / 2
    assert rest.payback_share == Decimal("0.8000")  # 4 of 5


@pytest.mark.django_db
def test_twice_for_the_same_date_gives_the_same_snapshot(hand_case):
    first = roi_recalculate(as_of=AS_OF)
    rows = list(RoiSnapshot.objects.values().order_by("bucket_id"))
    second = roi_recalculate(as_of=AS_OF)
    assert second.mode == JobRun.Mode.INCREMENTAL and second.status == "succeeded"
    again = list(RoiSnapshot.objects.values().order_by("bucket_id"))
    assert RoiSnapshot.objects.filter(date=AS_OF).count() == 2
    for row in rows + again:
        row.pop("id"), row.pop("job_run_id")
    assert rows == again
    assert first.pk != second.pk


@pytest.mark.django_db
def test_a_failing_run_leaves_the_previous_snapshot(hand_case):
    bucket, a, b, c = hand_case
    roi_recalculate(as_of=AS_OF)
    before = RoiSnapshot.objects.get(date=AS_OF, bucket=bucket).margin
    order(a, "2026-06-10", "1000", revenue="2000")

    def fail_at_snapshots(step):
        if step == "snapshots":
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        roi_recalculate(as_of=AS_OF, progress=fail_at_snapshots)
    assert RoiSnapshot.objects.get(date=AS_OF, bucket=bucket).margin == before
    assert CustomerMetrics.objects.get(customer=a).margin_lifetime == Decimal("150.00")
    failed = JobRun.objects.order_by("-started_at").first()
    assert failed.status == "failed" and "disk full" in failed.error
    assert failed.finished_at is not None
    # The next run succeeds and picks up the order.
    roi_recalculate(as_of=AS_OF)
    assert RoiSnapshot.objects.get(date=AS_OF, bucket=bucket).margin == before + 1000


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["2026-13-01", "yesterday", "2999-01-01"])
def test_future_or_malformed_dates_are_refused(value):
    with pytest.raises(ValidationError) as info:
        roi_recalculate(as_of=value)
    assert value in str(info.value)
    assert not JobRun.objects.exists()
    with pytest.raises(ValidationError, match="future"):
        roi_recalculate(as_of=timezone.localdate() + dt.timedelta(days=1))


@pytest.mark.django_db(transaction=True)
def test_two_runs_never_overlap():
    assert connection.vendor == "postgresql"
    CustomerFactory.create_batch(3)
    holding, release = threading.Event(), threading.Event()
    outcome = {}

    def hold(step):
        if step == "memberships":
            holding.set()
            release.wait(timeout=20)

    def first_run():
        try:
            outcome["first"] = roi_recalculate(as_of=AS_OF, progress=hold)
        finally:
            connection.close()

    worker = threading.Thread(target=first_run)
    worker.start()
    try:
        assert holding.wait(timeout=20)
        refused = roi_recalculate(as_of=AS_OF)
    finally:
        release.set()
        worker.join(timeout=30)
    assert refused.status == "failed" and "in progress" in refused.error
    assert outcome["first"].status == "succeeded"
    assert RoiSnapshot.objects.filter(date=AS_OF).count() == 1
    # With the lock free again, a run starts normally.
    assert roi_recalculate(as_of=AS_OF).status == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_other_writers_of_the_metrics_table_wait_for_a_run_and_readers_do_not():
    kept, gone = CustomerFactory(), CustomerFactory()
    order(kept, "2026-06-20", "10")
    order(gone, "2026-06-21", "30")
    roi_recalculate(as_of=AS_OF)
    holding, release, deleted = threading.Event(), threading.Event(), threading.Event()
    outcome = {}

    def hold(step):
        if step == "memberships":
            holding.set()
            release.wait(timeout=20)

    def run():
        try:
            outcome["run"] = roi_recalculate(as_of=AS_OF + dt.timedelta(days=1), progress=hold)
        finally:
            connection.close()

    def delete():
        try:
            with connection.cursor() as cur:  # a failure of this test must not hang it
                cur.execute("SET statement_timeout = '15s'")
            gone.delete()  # its metrics row with it
            deleted.set()
        finally:
            connection.close()

    job, deleter = threading.Thread(target=run), threading.Thread(target=delete)
    job.start()
    try:
        assert holding.wait(timeout=20)
        assert CustomerMetrics.objects.count() == 2  # a reader is not kept waiting
        deleter.start()
        assert not deleted.wait(timeout=1)  # the writer waits for the run to commit
    finally:
        release.set()
        job.join(timeout=30)
        deleter.join(timeout=30)
    assert outcome["run"].status == "succeeded" and deleted.is_set()
    outcome["run"].refresh_from_db()
    assert outcome["run"].aggregates is None  # cleared by the delete that came after it
    after = roi_recalculate(as_of=AS_OF + dt.timedelta(days=2))
    assert "aggregates_moved_by" not in after.counts
    snap = RoiSnapshot.objects.get(date=AS_OF + dt.timedelta(days=2), bucket=None)
    assert snap.customers == 1 and snap.margin == Decimal("10")


@pytest.mark.django_db(transaction=True)
def test_a_run_fails_cleanly_when_another_writer_holds_the_metrics_table(monkeypatch):
    from django.db import OperationalError, connections

    order(CustomerFactory(), "2026-06-20", "10")
    first = roi_recalculate(as_of=AS_OF)
    monkeypatch.setattr("segments.jobs.LOCK_WAIT", "200ms")
    other = connections.create_connection("default")
    try:
        with other.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("UPDATE crm_customermetrics SET influence = influence")
            with pytest.raises(OperationalError, match="lock timeout"):
                roi_recalculate(as_of=AS_OF + dt.timedelta(days=1))
            cur.execute("ROLLBACK")
    finally:
        other.close()
    failed = JobRun.objects.get(status="failed")
    assert "lock timeout" in failed.error
    assert RoiSnapshot.objects.filter(date=AS_OF + dt.timedelta(days=1)).count() == 0
    first.refresh_from_db()
    assert first.aggregates is not None  # the update was rolled back: nothing to clear
    assert roi_recalculate(as_of=AS_OF + dt.timedelta(days=1)).counts["aggregates_moved_by"] == 0


@pytest.mark.django_db
def test_a_dead_running_row_does_not_block_forever():
    JobRun.objects.create(as_of=AS_OF, mode="full", status="running")
    run = roi_recalculate(as_of=AS_OF)
    assert run.status == "succeeded"
    assert JobRun.objects.filter(status="failed", error__icontains="interrupted").count() == 1


def _state(as_of):
    metrics = list(
        CustomerMetrics.objects.order_by("customer_id").values(
            *[f.attname for f in CustomerMetrics._meta.concrete_fields if f.name != "refreshed_at"]
        )
    )
    snaps = list(
        RoiSnapshot.objects.filter(date=as_of)
        .order_by("bucket_id")
        .values(
            *[
                f.attname
                for f in RoiSnapshot._meta.concrete_fields
                if f.name not in ("id", "job_run")
            ]
        )
    )
    members = list(
        CurrentMembership.objects.order_by("customer_id").values_list("customer_id", "bucket_id")
    )
    cells = {(c.cohort, c.month): c.units for c in CohortContribution.objects.all() if c.units}
    bounds = sorted(RankBoundary.objects.values_list("kind", "tile", "value", "customer_id"))
    return metrics, snaps, members, cells, bounds


def random_activity(rnd, customers, staff, n, until, start=dt.date(2025, 1, 1)):
    """`n` orders (60 %) and interactions of random customers on random days up to `until`."""
    span = (until - start).days
    for _ in range(n):
        cust = rnd.choice(customers)
        day = start + dt.timedelta(days=rnd.randrange(span + 1))
        if rnd.random() < 0.6:
            order(cust, day.isoformat(), str(rnd.randrange(-20, 200)))
        else:
            InteractionFactory(
                customer=cust,
                staff=rnd.choice(staff),
                minutes=rnd.randrange(1, 90),
                occurred_at=at(day.isoformat()),
            )


@pytest.mark.django_db
@pytest.mark.parametrize("seed", [1, 2])
def test_incremental_equals_full(seed, monkeypatch):
    monkeypatch.setattr("segments.jobs.FULL_EVERY_DAYS", 1000)  # d2 is 45 days after d1
    monkeypatch.setattr("crm.metrics.RANK_REPAIR_MIN_ROWS", 10)  # repair ranks, do not re-sort
    rnd = random.Random(seed)
    Bucket.objects.create(
        name="Top",
        priority=1,
        rules={
            "op": "and",
            "conditions": [{"field": "value_decile", "operator": "<=", "value": 3}],
        },
    )
    Bucket.objects.create(name="Big", priority=2, rules=BIG_RULES)
    Bucket.objects.create(
        name="Quiet",
        priority=3,
        rules={
            "op": "and",
            "conditions": [{"field": "status", "operator": "!=", "value": "active"}],
        },
    )
    Bucket.objects.create(
        name="Lapsing",
        priority=4,
        rules={
            "op": "and",
            "conditions": [
                {"field": "days_since_last_order", "operator": "between", "value": [20, 60]}
            ],
        },
    )
    staff = [SupportUserFactory(), SupportUserFactory(hourly_cost=Decimal("75"))]
    customers = CustomerFactory.create_batch(25)
    d1, d2 = dt.date(2026, 3, 1), dt.date(2026, 4, 15)
    random_activity(rnd, customers, staff, 120, d2)  # some lies after d1, enters the window later
    roi_recalculate(as_of=d1)
    random_activity(rnd, customers, staff, 40, d2)
    customers += CustomerFactory.create_batch(3)
    changed = rnd.choice(customers)
    changed.cancelled_at = at("2026-03-10")
    changed.save()
    SocialProfileFactory(customer=rnd.choice(customers), followers=5000)
    incremental = roi_recalculate(as_of=d2)
    assert incremental.mode == "incremental"
    assert incremental.counts["customers_refreshed"] < len(customers)
    # The ROI sums were moved from d1's by the rows the run wrote, not aggregated again.
    assert 0 < incremental.counts["aggregates_moved_by"] < len(customers)
    after_incremental, moved_sums = _state(d2), _sums(incremental)
    full = roi_recalculate(as_of=d2, full=True)
    assert full.mode == "full"
    assert "aggregates_moved_by" not in full.counts
    assert _state(d2) == after_incremental
    assert full.reports == incremental.reports  # whale curve and cohorts
    assert moved_sums == _sums(full)  # and every sum, histogram bin and cohort size


def _sums(run: JobRun) -> dict:
    """The aggregates a run stored, an empty SUM (NULL) read as 0."""
    run.refresh_from_db()
    sums = run.aggregates["sums"]
    for row in sums["buckets"].values():
        for name, value in row.items():
            row[name] = Decimal(value or 0)
    sums["whale"] = sorted((b, n, Decimal(amount or 0)) for b, n, amount in sums["whale"])
    return sums


def _business(seed):
    """A bucket and random orders and interactions of 28 customers, some without an acquisition
    date (their cohort is their first order's month)."""
    rnd = random.Random(seed)
    big_bucket()
    staff = [SupportUserFactory(), SupportUserFactory(hourly_cost=Decimal("75"))]
    customers = CustomerFactory.create_batch(20, acquisition_date=dt.date(2025, 2, 1))
    customers += CustomerFactory.create_batch(5, acquisition_date=None)
    customers += CustomerFactory.create_batch(3, acquisition_cost=Decimal("2"))
    random_activity(rnd, customers, staff, 150, AS_OF)
    return rnd, customers, staff


def _side_tables() -> list[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT relname FROM pg_class WHERE relname LIKE 'crm_metrics_%%_side'")
        return [row[0] for row in cur.fetchall()]


def _side_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "side-query" and t.is_alive()]


@pytest.mark.django_db(transaction=True)
def test_a_full_run_shares_its_work_with_a_second_connection_and_gets_the_same_figures(
    monkeypatch,
):
    _business(3)
    shared_runs = []
    real = metrics_mod._stage_with_side_queries
    monkeypatch.setattr(
        metrics_mod,
        "_stage_with_side_queries",
        lambda *args, **kw: shared_runs.append(1) or real(*args, **kw),
    )
    shared = roi_recalculate(as_of=AS_OF, full=True)
    assert shared.status == "succeeded" and shared_runs == [1]
    # Counted apart from the staging table, which keeps only the rows to write.
    assert shared.counts["customers_refreshed"] == Customer.objects.count()
    # The payback histogram, grouped before the second connection's days were written and
    # moved by them afterwards (every one, in a first run), is the one grouped now.
    shared.refresh_from_db()
    stored = RoiAggregates.from_json(shared.aggregates["sums"]).payback
    assert stored == selectors.roi_payback(as_of=AS_OF) and stored
    state = _state(AS_OF)
    assert sum(row["payback_days"] is not None for row in state[0]) >= 10
    assert len(state[3]) >= 10  # cohort cells
    assert len(state[4]) == 18  # rank boundaries
    assert _side_tables() == [] and _side_threads() == []
    # Inside a caller's transaction the second connection could not see the caller's writes:
    # the run stays on one connection, and must find nothing to change.
    with transaction.atomic():
        alone = roi_recalculate(as_of=AS_OF, full=True)
    assert alone.status == "succeeded" and shared_runs == [1]
    assert alone.counts["customers_refreshed"] == Customer.objects.count()
    assert _state(AS_OF) == state
    assert alone.reports == shared.reports
    # A later shared run moves a few payback days only (an order brings two customers' days
    # forward): the histogram grouped before them, moved by them, is still the one grouped now.
    paid = CustomerMetrics.objects.filter(payback_days__gt=30).order_by("customer_id")[:2]
    for metrics_row in paid:
        order(metrics_row.customer, "2025-02-02", "100000", revenue="100000")
    again = roi_recalculate(as_of=AS_OF, full=True)
    assert again.status == "succeeded" and shared_runs == [1, 1]
    assert CustomerMetrics.objects.filter(payback_days=1).count() >= 2
    again.refresh_from_db()
    stored = RoiAggregates.from_json(again.aggregates["sums"]).payback
    assert stored == selectors.roi_payback(as_of=AS_OF)


@pytest.mark.django_db(transaction=True)
def test_an_incremental_run_stages_half_its_customers_on_a_second_connection(monkeypatch):
    monkeypatch.setattr(metrics_mod, "SIDE_STAGE_MIN_CUSTOMERS", 2)
    halves = []
    real = metrics_mod._stage_halves
    monkeypatch.setattr(
        metrics_mod,
        "_stage_halves",
        lambda cursor, params, ids, **kw: (
            halves.append(len(ids)) or real(cursor, params, ids, **kw)
        ),
    )
    rnd, customers, staff = _business(5)
    roi_recalculate(as_of=AS_OF - dt.timedelta(days=5))
    random_activity(rnd, customers, staff, 30, AS_OF, start=AS_OF - dt.timedelta(days=4))
    incremental = roi_recalculate(as_of=AS_OF)
    assert incremental.mode == "incremental" and incremental.status == "succeeded"
    assert halves == [incremental.counts["customers_refreshed"]] and halves[0] >= 10
    assert _side_tables() == [] and _side_threads() == []
    state = _state(AS_OF)
    with transaction.atomic():  # one connection, every customer again: nothing may change
        assert roi_recalculate(as_of=AS_OF, full=True).mode == "full"
    assert _state(AS_OF) == state


@pytest.mark.django_db(transaction=True)
def test_a_failure_on_either_connection_fails_the_run_and_keeps_the_previous_figures(monkeypatch):
    _business(4)
    assert roi_recalculate(as_of=AS_OF, full=True).status == "succeeded"
    before = _state(AS_OF)
    # Fails on the second connection, after both stagings started.
    monkeypatch.setattr(
        metrics_mod,
        "_payback_cohorts_sql",
        lambda **kwargs: "SELECT 1 / 0 AS customer_id, 1 AS days",
    )
    with pytest.raises(DataError, match="division by zero"):
        roi_recalculate(as_of=AS_OF, full=True)
    monkeypatch.undo()
    real_stage = metrics_mod._stage_sql
    monkeypatch.setattr(  # fails on this connection while the second one computes payback
        metrics_mod,
        "_stage_sql",
        lambda **kwargs: f"SELECT * FROM ({real_stage(**kwargs)}) broken WHERE 1 / 0 = 1",  # noqa: S608
    )
    with pytest.raises(DataError, match="division by zero"):
        roi_recalculate(as_of=AS_OF, full=True)
    monkeypatch.undo()
    assert _side_threads() == []
    assert _state(AS_OF) == before
    failed = JobRun.objects.filter(status="failed").order_by("started_at")
    assert [run.error.startswith("DataError") for run in failed] == [True, True]
    # A leftover of the failed runs is replaced by the next one, which drops it.
    assert roi_recalculate(as_of=AS_OF, full=True).status == "succeeded"
    assert _side_tables() == []
    assert _state(AS_OF) == before


@pytest.mark.django_db
def test_incremental_moves_an_untouched_customer_whose_days_since_cross_a_rule():
    _days_since_crossed()


@pytest.mark.django_db(transaction=True)
def test_the_second_connection_finds_the_customers_whose_days_since_cross_a_rule(monkeypatch):
    # Outside a transaction the run is concurrent: the second connection reads the days part
    # of the membership scope into a table of its own, which the run then drops.
    read_beside = []
    scope = jobs._membership_scope

    def recorded(plan, *, days_read):
        read_beside.append(days_read)
        return scope(plan, days_read=days_read)

    monkeypatch.setattr(jobs, "_membership_scope", recorded)
    _days_since_crossed()
    assert read_beside == [True]
    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", [jobs.DAYS_SIDE_TABLE])
        assert cur.fetchone()[0] is None


def _days_since_crossed():
    lapsing = Bucket.objects.create(
        name="Lapsing",
        priority=1,
        rules={
            "op": "and",
            "conditions": [{"field": "days_since_last_order", "operator": ">", "value": 30}],
        },
    )
    quiet = CustomerFactory()
    order(quiet, "2026-05-31", "10")  # 30 days before AS_OF, 31 a day later
    other = CustomerFactory()
    order(other, "2026-06-20", "10")
    roi_recalculate(as_of=AS_OF)
    assert CurrentMembership.objects.get(customer=quiet).bucket_id is None
    run = roi_recalculate(as_of=AS_OF + dt.timedelta(days=1))
    assert run.mode == "incremental"
    assert run.counts["memberships"]["evaluated"] == 1  # only the customer that crossed
    assert CurrentMembership.objects.get(customer=quiet).bucket_id == lapsing.pk
    snap = RoiSnapshot.objects.get(date=AS_OF + dt.timedelta(days=1), bucket=lapsing)
    assert snap.customers == 1


@pytest.mark.django_db
def test_incremental_moves_the_sums_of_an_untouched_customer_whose_status_the_date_moves():
    _status_moved_by_the_date()


@pytest.mark.django_db(transaction=True)
def test_the_second_connection_finds_the_rows_whose_status_the_date_moves():
    # Outside a transaction the run is concurrent: the second connection finds the candidates.
    _status_moved_by_the_date()


def _status_moved_by_the_date():
    fading = CustomerFactory()
    order(fading, (AS_OF - dt.timedelta(days=180)).isoformat(), "10")  # at risk, churned next day
    order(CustomerFactory(), "2026-06-20", "10")
    roi_recalculate(as_of=AS_OF)
    assert RoiSnapshot.objects.get(date=AS_OF, bucket=None).churn_rate == 0
    tomorrow = AS_OF + dt.timedelta(days=1)
    run = roi_recalculate(as_of=tomorrow)
    assert run.mode == "incremental" and run.counts["customers_refreshed"] == 0
    assert run.counts["aggregates_moved_by"] == 1  # the row whose status the date moved
    assert CustomerMetrics.objects.get(customer=fading).status == "churned"
    moved = RoiSnapshot.objects.get(date=tomorrow, bucket=None)
    assert moved.customers == 2 and moved.churn_rate == Decimal("0.5")
    roi_recalculate(as_of=tomorrow, full=True)
    assert RoiSnapshot.objects.get(date=tomorrow, bucket=None).churn_rate == Decimal("0.5")


@pytest.mark.django_db
def test_a_metrics_row_written_outside_the_job_makes_the_next_run_aggregate_every_row():
    gone, kept = CustomerFactory(), CustomerFactory()
    order(gone, "2026-06-20", "10")
    order(kept, "2026-06-21", "30")
    first = roi_recalculate(as_of=AS_OF)
    first.refresh_from_db()
    assert first.aggregates["sums"]["buckets"]["0"]["customers"] == 2
    gone.delete()  # its metrics row goes with it: the trigger clears the stored sums
    first.refresh_from_db()
    assert first.aggregates is None
    run = roi_recalculate(as_of=AS_OF + dt.timedelta(days=1))
    assert run.mode == "incremental" and "aggregates_moved_by" not in run.counts
    snap = RoiSnapshot.objects.get(date=AS_OF + dt.timedelta(days=1), bucket=None)
    assert snap.customers == 1 and snap.margin == Decimal("30")
    run.refresh_from_db()  # and the sums it stored are whole again
    assert run.aggregates["sums"]["buckets"]["0"]["customers"] == 1


@pytest.mark.django_db
def test_incremental_copies_the_bucket_into_a_metrics_row_made_after_the_evaluation():
    """A customer evaluated without a metrics row (e.g. created while a run was going) keeps
    the same membership when the row appears: the row still gets the bucket, and the
    snapshot counts the customer in it."""
    bucket = big_bucket()
    late = CustomerFactory()
    order(late, "2026-06-01", "10")
    order(late, "2026-06-02", "10")
    roi_recalculate(as_of=AS_OF)
    assert CurrentMembership.objects.get(customer=late).bucket == bucket
    CustomerMetrics.objects.filter(customer=late).delete()
    order(late, "2026-06-30", "10")  # in scope tonight; still Big
    run = roi_recalculate(as_of=AS_OF + dt.timedelta(days=1))
    assert run.mode == "incremental" and run.counts["memberships"]["entered"] == 0
    assert CustomerMetrics.objects.get(customer=late).bucket_id == bucket.pk
    snap = RoiSnapshot.objects.get(date=AS_OF + dt.timedelta(days=1), bucket=bucket)
    assert snap.customers == 1


@pytest.mark.django_db
def test_incremental_reevaluates_everyone_after_a_bucket_changes():
    bucket = big_bucket()
    customers = CustomerFactory.create_batch(3)
    for c in customers:
        order(c, "2026-06-01", "10")
    roi_recalculate(as_of=AS_OF)
    assert CurrentMembership.objects.filter(bucket=bucket).count() == 0
    from segments.services import bucket_update

    rules = {"op": "and", "conditions": [{"field": "order_count", "operator": ">=", "value": 1}]}
    bucket_update(bucket=bucket, rules=rules)
    run = roi_recalculate(as_of=AS_OF + dt.timedelta(days=1))
    assert run.mode == "incremental" and run.counts["memberships"]["evaluated"] == 3
    assert CurrentMembership.objects.filter(bucket=bucket).count() == 3


@pytest.mark.django_db
def test_a_full_run_at_least_every_week():
    CustomerFactory()
    assert roi_recalculate(as_of=AS_OF).mode == "full"
    assert roi_recalculate(as_of=AS_OF + dt.timedelta(days=6)).mode == "incremental"
    assert roi_recalculate(as_of=AS_OF + dt.timedelta(days=7)).mode == "full"
    assert roi_recalculate(as_of=AS_OF + dt.timedelta(days=8)).mode == "incremental"
    assert roi_recalculate(as_of=AS_OF + dt.timedelta(days=2)).mode == "full"  # going back


@pytest.mark.django_db
def test_payback_counts_a_customer_whose_later_orders_lost_money():
    # Paid back on day 31 (margin 120 >= CAC 100); a later negative-margin order leaves the
    # lifetime margin (70) below the CAC: the lifetime-margin shortcut must not drop it.
    cust = CustomerFactory(acquisition_date=dt.date(2026, 1, 1), acquisition_cost=Decimal("100"))
    order(cust, "2026-02-01", "120")
    order(cust, "2026-03-01", "-50")
    roi_recalculate(as_of=AS_OF)
    rest = RoiSnapshot.objects.get(date=AS_OF, bucket__isnull=True)
    assert rest.payback_share == Decimal("1.0000") and rest.payback_median_days == 31


@pytest.mark.django_db
def test_payback_ignores_orders_before_acquisition():
    early = CustomerFactory(acquisition_date=dt.date(2026, 1, 1), acquisition_cost=Decimal("100"))
    order(early, "2025-12-31", "500")  # the day before acquisition: never counts
    order(early, "2026-01-10", "40")
    late = CustomerFactory(acquisition_date=dt.date(2026, 1, 1), acquisition_cost=Decimal("100"))
    order(late, "2026-01-01", "100")  # on the acquisition day: paid back after 0 days
    roi_recalculate(as_of=AS_OF)
    rest = RoiSnapshot.objects.get(date=AS_OF, bucket__isnull=True)
    assert rest.payback_share == Decimal("0.5000") and rest.payback_median_days == 0


@pytest.mark.django_db
def test_cohort_triangle_counts_events_inside_the_shown_months_only():
    from segments import selectors

    tz = timezone.get_default_timezone()
    cust = CustomerFactory(acquisition_date=dt.date(2026, 3, 15), acquisition_cost=Decimal("10"))
    for when, margin in (
        (dt.datetime(2026, 2, 28, 23, 59, tzinfo=tz), "1000"),  # month before the cohort
        (dt.datetime(2026, 3, 1, 0, 0, tzinfo=tz), "7"),  # first local minute of the cohort
        (dt.datetime(2026, 6, 30, 23, 59, tzinfo=tz), "5"),  # last minute of this month
        (dt.datetime(2026, 7, 1, 0, 0, tzinfo=tz), "2000"),  # next month: the future
    ):
        OrderFactory(
            customer=cust,
            placed_at=when,
            revenue=Decimal("3000"),
            cost_of_goods=Decimal("3000") - Decimal(margin),
        )
    metrics_refresh(as_of=dt.date(2026, 6, 30))  # the triangle reads the tables it maintains
    triangle = selectors.cohort_triangle(months=12, today=dt.date(2026, 6, 30))
    (row,) = [r for r in triangle["rows"] if r["cohort"] == "2026-03"]
    assert row["customers"] == 1
    assert row["cells"][:5] == ["7.00", "7.00", "7.00", "12.00", None]


@pytest.mark.parametrize(
    "concurrent",
    [
        pytest.param(False, marks=pytest.mark.django_db),
        # The stale rows read by a second connection: it sees committed rows only.
        pytest.param(True, marks=pytest.mark.django_db(transaction=True)),
    ],
    ids=["one-connection", "stale-rows-beside"],
)
def test_incremental_scope_is_what_changed_plus_what_time_made_stale(concurrent):
    stale = CustomerFactory()
    order(stale, "2025-07-01", "10")  # leaves the 365-day window on 2026-07-01
    quiet = CustomerFactory()
    order(quiet, "2026-06-01", "10")
    edited, buyer = CustomerFactory(), CustomerFactory()
    last = roi_recalculate(as_of=AS_OF)
    assert last.counts["max_customer_id"] == max(c.id for c in (stale, quiet, edited, buyer))
    assert touched_customer_ids(last=last, as_of=AS_OF, concurrent=concurrent) == []
    edited.city = "Busan"
    edited.save()
    order(buyer, "2026-06-30", "10")
    new = CustomerFactory()
    next_day = AS_OF + dt.timedelta(days=1)
    touched = touched_customer_ids(last=last, as_of=next_day, concurrent=concurrent)
    assert touched == sorted([stale.id, edited.id, buyer.id, new.id])


@pytest.mark.django_db
def test_incremental_moves_an_untouched_customer_whose_decile_changed(monkeypatch):
    monkeypatch.setattr("crm.metrics.RANK_REPAIR_MIN_ROWS", 10)  # repair ranks, do not re-sort
    top = Bucket.objects.create(
        name="Top",
        priority=1,
        rules={
            "op": "and",
            "conditions": [{"field": "value_decile", "operator": "=", "value": 1}],
        },
    )
    customers = CustomerFactory.create_batch(20)
    for rank, c in enumerate(customers):
        order(c, "2026-06-01", str(10 * (rank + 1)))  # the last two are the top decile
        InteractionFactory(customer=c, minutes=rank + 1, occurred_at=at("2026-06-02"))
    roi_recalculate(as_of=AS_OF)
    assert RankBoundary.objects.count() == 18  # the next run repairs the ranks
    members = CurrentMembership.objects.filter(bucket=top)
    assert set(members.values_list("customer_id", flat=True)) == {c.id for c in customers[-2:]}
    for c in customers[:2]:  # two others overtake them
        order(c, "2026-06-30", "1000", revenue="1500")
    incremental = roi_recalculate(as_of=AS_OF + dt.timedelta(days=1))
    assert incremental.mode == "incremental"
    assert incremental.counts["customers_refreshed"] == 2
    assert set(members.values_list("customer_id", flat=True)) == {c.id for c in customers[:2]}


@pytest.mark.django_db(transaction=True)
def test_a_run_in_a_callers_transaction_leaves_its_deferred_checks_deferred():
    """The job checks its foreign keys early only in its own transaction: a caller's rows
    still wait for the commit (an order may precede its customer)."""
    _business(6)
    later = Customer.objects.order_by("-id").values_list("id", flat=True).first() + 1000
    with transaction.atomic():
        assert roi_recalculate(as_of=AS_OF, full=True).status == "succeeded"
        OrderFactory(customer_id=later, placed_at=at("2026-06-01"))  # no such customer yet
        CustomerFactory(id=later)
    assert Order.objects.filter(customer_id=later).count() == 1
