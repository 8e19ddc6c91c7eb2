"""The nightly ROI job: metrics, bucket membership, then one ROI snapshot per bucket and date.

`roi_recalculate` is the one entry point; the Celery task, the management command and the
"recalculate now" button all call it. Everything heavy is set-based SQL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _

from crm.metrics import (
    CHANGED_TABLE,
    METRICS_VERSION,
    NEW_TABLE,
    PAYBACK_MOVED_TABLE,
    SIDE_SETTINGS,
    before_images_create,
    metrics_params,
    metrics_refresh,
    planner_setting,
)
from crm.metrics import start_of_day as metrics_start_of_day
from crm.models import Customer, CustomerMetrics, Interaction, Order, SocialProfile
from crm.side_query import side_query

from . import rules as rules_mod
from . import selectors
from .models import Bucket, JobRun, RoiSnapshot

logger = logging.getLogger(__name__)

ADVISORY_LOCK_KEY = 724_311_002  # pg_try_advisory_lock key: one ROI run at a time
# How long a run waits for other writers of the metrics table to commit before it fails (an
# OperationalError: the Celery task retries it later).
LOCK_WAIT = "5min"
STALE_RUNNING_AFTER = dt.timedelta(hours=6)  # SQLite only: a "running" row older than this died
STEPS = ("metrics", "memberships", "snapshots", "reports")
# Edits the incremental scope cannot see (an order or interaction changed in place or deleted, a
# staff member's hourly cost changed) are caught by a full run at least this often.
FULL_EVERY_DAYS = 7

Progress = Callable[[str], None]


def parse_as_of(value: dt.date | str | None) -> dt.date:
    """A snapshot date: a date or "YYYY-MM-DD", not in the future; None means today.

    Raises ValidationError with a message naming the date and the reason.
    """
    today = timezone.localdate()
    if value is None or value == "":
        return today
    if isinstance(value, dt.datetime):
        value = value.date()
    if not isinstance(value, dt.date):
        try:
            value = dt.date.fromisoformat(str(value).strip())
        except ValueError:
            raise ValidationError(
                _("Date '%(value)s' is not a valid date; use YYYY-MM-DD."),
                code="invalid",
                params={"value": value},
            )
    if value > today:
        raise ValidationError(
            _("Date %(value)s is in the future; ROI can only be computed up to today."),
            code="future",
            params={"value": value.isoformat()},
        )
    return value


# --- locking -------------------------------------------------------------------------------


@contextlib.contextmanager
def _advisory_lock() -> Iterator[bool]:
    """PostgreSQL session advisory lock; yields whether it was acquired. SQLite: always True
    (the partial unique index "one running JobRun" is the lock there)."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
        acquired = cur.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])


def _clear_stale_runs() -> None:
    """Mark "running" rows of dead runs as failed. Under the PostgreSQL lock every running row
    is dead (its process would hold the lock); on SQLite only old ones are presumed dead."""
    stale = JobRun.objects.filter(status=JobRun.Status.RUNNING)
    if connection.vendor != "postgresql":
        stale = stale.filter(started_at__lt=timezone.now() - STALE_RUNNING_AFTER)
    stale.update(
        status=JobRun.Status.FAILED,
        finished_at=timezone.now(),
        error=_("Interrupted: the process running it stopped before finishing."),
    )


def _busy_run(as_of: dt.date, mode: str) -> JobRun:
    return JobRun.objects.create(
        as_of=as_of,
        mode=mode,
        status=JobRun.Status.FAILED,
        finished_at=timezone.now(),
        error=_("Another ROI run is in progress; this one was not started. Try again later."),
    )


# --- incremental scope -----------------------------------------------------------------------


def _watermarks() -> dict:
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT (SELECT MAX(id) FROM {Order._meta.db_table}), "  # noqa: S608
            f"(SELECT MAX(id) FROM {Interaction._meta.db_table}), "
            f"(SELECT MAX(id) FROM {Customer._meta.db_table})"
        )
        max_order, max_interaction, max_customer = cur.fetchone()
    return {
        "max_order_id": max_order or 0,
        "max_interaction_id": max_interaction or 0,
        "max_customer_id": max_customer or 0,
    }


def touched_customer_ids(*, last: JobRun, as_of: dt.date, concurrent: bool = False) -> list[int]:
    """Customers whose metrics may differ from the last successful run's, in one SQL query of
    index lookups and one scan.

    Customers created (above the last run's id watermark) or edited since that run started,
    social profiles edited since, orders and interactions above the id watermarks it recorded,
    and customers whose metrics row says it goes stale by `as_of` (recheck_on: an event left a
    window or a future-dated one arrived, or the acquisition date came). Status and ranks of
    everyone else are moved by metrics_refresh itself.

    recheck_on has no index (migration 0018): every customer whose window moved gets a new
    date, and with an index each of those rewrites was a non-HOT update (1M customers, 25k
    rows rewritten: 0.43-0.48 -> 0.29-0.37 s). Its scan takes about 0.17 s: `concurrent` (no
    outer transaction, PostgreSQL) runs it on a second connection while this one reads the
    rest.
    """
    params = {
        "since": last.started_at,
        "max_customer": last.counts.get("max_customer_id"),
        "max_order": int(last.counts.get("max_order_id", 0)),
        "max_interaction": int(last.counts.get("max_interaction_id", 0)),
        "as_of": as_of,
    }
    customer, order = Customer._meta.db_table, Order._meta.db_table
    interaction, social = Interaction._meta.db_table, SocialProfile._meta.db_table
    metrics = CustomerMetrics._meta.db_table
    stale = f"SELECT customer_id FROM {metrics} WHERE recheck_on <= %(as_of)s"  # noqa: S608
    parts = [
        f"SELECT id FROM {customer} WHERE updated_at >= %(since)s",  # noqa: S608
        f"SELECT customer_id FROM {social} WHERE updated_at >= %(since)s",  # noqa: S608
        f"SELECT customer_id FROM {order} WHERE id > %(max_order)s",  # noqa: S608
        f"SELECT customer_id FROM {interaction} WHERE id > %(max_interaction)s",  # noqa: S608
    ]
    if params["max_customer"] is None:  # a run from before the customer watermark
        parts.append(
            f"SELECT c.id FROM {customer} c WHERE NOT EXISTS "  # noqa: S608
            f"(SELECT 1 FROM {metrics} m WHERE m.customer_id = c.id)"
        )
    else:
        parts.append(f"SELECT id FROM {customer} WHERE id > %(max_customer)s")  # noqa: S608
    beside = concurrent and connection.vendor == "postgresql"
    with (
        side_query([*SIDE_SETTINGS, (stale, params)]) if beside else contextlib.nullcontext()
    ) as side:
        with connection.cursor() as cur:
            cur.execute(" UNION ".join(parts if beside else [*parts, stale]), params)
            ids = {row[0] for row in cur.fetchall()}
        if side is not None:
            ids.update(row[0] for row in side.result())
    return sorted(ids)


# --- snapshots -------------------------------------------------------------------------------

_RATIO = Decimal("0.0001")
_CENTS = Decimal("0.01")


def _q(value, places: Decimal) -> Decimal:
    return Decimal(value).quantize(places, rounding=ROUND_HALF_UP)


def _median(histogram: list[tuple[int, int]]) -> int | None:
    """The median of a sorted (value, count) histogram: the middle value, or the mean of the
    two middle ones rounded half up."""
    n = sum(count for _value, count in histogram)
    if not n:
        return None
    wanted = sorted({(n + 1) // 2, (n + 2) // 2})
    found, seen = [], 0
    for value, count in histogram:
        seen += count
        while wanted and wanted[0] <= seen:
            found.append(value)
            wanted.pop(0)
    return int(_q(Decimal(sum(found)) / len(found), Decimal(1)))


def _snapshot_rows(*, as_of: dt.date, aggregates, job_run: JobRun | None) -> list[RoiSnapshot]:
    """One RoiSnapshot per active bucket, per bucket with members, and for Unsegmented, from
    the aggregates of the metrics table (domain.md "Money")."""
    buckets = {b.pk: b for b in Bucket.objects.all()}
    keys = {pk for pk, b in buckets.items() if b.active} | set(aggregates.buckets) | {0}
    total = sum((row["margin"] or 0) - (row["cost"] or 0) for row in aggregates.buckets.values())
    rows = []
    for key in sorted(keys):
        row = aggregates.buckets.get(key)
        snap = RoiSnapshot(
            date=as_of,
            bucket_id=key or None,
            bucket_name=buckets[key].name if key in buckets else "",
            job_run=job_run,
        )
        if row:
            margin, cost = Decimal(row["margin"] or 0), Decimal(row["cost"] or 0)
            contribution = margin - cost
            snap.customers = row["customers"]
            snap.revenue = Decimal(row["revenue"] or 0)
            snap.margin, snap.cost_to_serve, snap.contribution = margin, cost, contribution
            snap.roi = _q(contribution / cost, _RATIO) if cost > 0 else None
            snap.contribution_per_customer = _q(contribution / row["customers"], _CENTS)
            if row["effort_n"]:
                snap.avg_effort = _q(Decimal(row["effort_sum"]) / row["effort_n"], _CENTS)
            snap.avg_influence = _q(Decimal(row["influence_sum"] or 0) / row["customers"], _CENTS)
            snap.churn_rate = _q(Decimal(row["churned"] or 0) / row["customers"], _RATIO)
            cac = Decimal(row["cac"] or 0)
            snap.ltv_cac = _q(Decimal(row["clife"] or 0) / cac, _RATIO) if cac > 0 else None
            paid = aggregates.payback.get(key, [])
            snap.payback_median_days = _median(paid)
            if row["eligible"]:
                n_paid = sum(count for _days, count in paid)
                snap.payback_share = _q(Decimal(n_paid) / row["eligible"], _RATIO)
        else:
            snap.customers = 0
            snap.revenue = snap.margin = snap.cost_to_serve = snap.contribution = Decimal(0)
        contribution = snap.contribution or Decimal(0)
        snap.share_of_total = _q(contribution / total, _RATIO) if total else None
        rows.append(snap)
    return rows


# NPS per bucket comes from surveys, which sits above segments: segments may not import it.
# surveys registers a provider from its AppConfig.ready(); without one the column stays empty.
NpsProvider = Callable[..., dict]  # (*, as_of) -> {bucket id or None: NPS or None}
_nps_provider: NpsProvider | None = None


def register_nps_provider(provider: NpsProvider | None) -> None:
    """Let an app above segments fill RoiSnapshot.nps: call from its AppConfig.ready().

    `provider(as_of=date)` returns {bucket id, or None for Unsegmented: NPS (-100..100) or
    None} computed set-based over the customers' current buckets (just refreshed by the job).
    Registering again replaces the provider; None removes it.
    """
    global _nps_provider
    _nps_provider = provider


def _snapshots_fill_nps(*, as_of: dt.date) -> None:
    """One UPDATE setting the NPS of the `as_of` snapshot rows from the registered provider."""
    if _nps_provider is None:
        return
    by_bucket = {k: v for k, v in _nps_provider(as_of=as_of).items() if v is not None}
    if not by_bucket:
        return
    whens = [
        When(bucket__isnull=True, then=Value(nps))
        if bucket_id is None
        else When(bucket_id=bucket_id, then=Value(nps))
        for bucket_id, nps in by_bucket.items()
    ]
    field = RoiSnapshot._meta.get_field("nps")
    RoiSnapshot.objects.filter(date=as_of).update(
        nps=Case(*whens, default=Value(None), output_field=field.clone())
    )


def snapshots_write(*, as_of: dt.date, job_run: JobRun | None = None, aggregates=None) -> int:
    """Replace the ROI snapshots of `as_of` from the current metrics and memberships.

    The figures come from one aggregation of the metrics table (selectors.roi_aggregates, or
    `aggregates` already computed by the caller). Delete + insert inside one transaction:
    readers see the previous rows until commit, and a second call for the same date gives the
    same rows (idempotent, never duplicated). NPS is filled by the provider surveys registers
    (register_nps_provider), if any. Returns the number of rows written.
    """
    if aggregates is None:
        aggregates = selectors.roi_aggregates(as_of=as_of)
    rows = _snapshot_rows(as_of=as_of, aggregates=aggregates, job_run=job_run)
    with transaction.atomic():
        RoiSnapshot.objects.filter(date=as_of).delete()
        RoiSnapshot.objects.bulk_create(rows)
        _snapshots_fill_nps(as_of=as_of)
    return len(rows)


# --- membership scope --------------------------------------------------------------------------

SCOPE_TABLE = "segments_tmp_scope"


def _bucket_signature() -> list:
    return [
        list(row)
        for row in Bucket.objects.order_by("id").values_list("id", "version", "active", "priority")
    ]


DAYS_SIDE_TABLE = "segments_days_side"  # unlogged: written by the refresh's second connection


@dataclass
class _ScopePlan:
    """What _membership_scope reads besides the customers the refresh changed: the customers
    whose days since the last order may cross a number a rule compares it with (`days`, SQL
    and parameters, or None), and the extra fields' changes (`extra`, SQL parts and parameters).
    """

    days: tuple[str, list] | None
    extra: tuple[list[str], list]

    def committed_reads(self) -> list[tuple[str, list | None]]:
        """The days part as statements for the refresh's second connection (metrics_refresh
        committed_reads): it reads the metrics rows as they were before the refresh, which is
        enough (the customers whose last order the refresh moves are in CHANGED_TABLE anyway),
        while this connection writes (1M customers: a scan of every row, 0.1 s)."""
        if self.days is None:
            return []
        sql, params = self.days
        return [
            (f"DROP TABLE IF EXISTS {DAYS_SIDE_TABLE}", None),
            (f"CREATE UNLOGGED TABLE {DAYS_SIDE_TABLE} AS {sql}", params),
        ]


def _membership_scope_plan(*, last: JobRun, as_of: dt.date, signature: list) -> _ScopePlan | None:
    """How to find the customers whose bucket may differ from the last run's
    (_membership_scope), or None when every customer must be evaluated again.

    Everyone: when a bucket changed (rules, priority, active), when the year changed and a rule
    reads age, or when a rule reads a field registered without a changed_since function.
    Otherwise: the customers metrics_refresh recomputed or re-ranked (CHANGED_TABLE), those
    whose days since the last order crossed a number a rule compares it with, and those whose
    registered extra fields changed since the last run (e.g. a new NPS answer).
    """
    if last.counts.get("buckets") != signature:
        return None
    rules = [b.rules for b in selectors.active_buckets()]
    used = set().union(*(rules_mod.fields_used(r) for r in rules)) if rules else set()
    if "age" in used and as_of.year != last.as_of.year:
        return None
    extra = [f for f in used if selectors.is_extra_field(f)]
    if any(selectors.extra_field_changes(f) is None for f in extra):
        return None
    metrics = CustomerMetrics._meta.db_table
    days_parts, days_params = [], []
    days = set().union(*(rules_mod.numbers_compared(r, "days_since_last_order") for r in rules))
    for x in sorted(days):
        # days since = as_of - D grows from (last.as_of - D) to (as_of - D): a comparison with x
        # can only flip for local order dates D in [last.as_of - x - 1, as_of - x + 1].
        low = metrics_start_of_day(last.as_of - dt.timedelta(days=x + 1))
        high = metrics_start_of_day(as_of - dt.timedelta(days=x - 2))
        days_parts.append(
            f"SELECT customer_id FROM {metrics} "  # noqa: S608
            "WHERE last_order_at >= %s AND last_order_at < %s"
        )
        days_params += [low, high]
    extra_parts, extra_params = [], []
    since = min(last.started_at, metrics_params(last.as_of)["end_ts"])
    for name in extra:
        sql, params = selectors.extra_field_changes(name)(since).query.sql_with_params()
        extra_parts.append(f"SELECT * FROM ({sql}) AS changed_{len(extra_parts)}")  # noqa: S608
        extra_params += list(params)
    return _ScopePlan(
        days=(" UNION ".join(days_parts), days_params) if days_parts else None,
        extra=(extra_parts, extra_params),
    )


def _membership_scope(plan: _ScopePlan, *, days_read: bool) -> str:
    """The customers whose bucket may differ from the last run's (_membership_scope_plan), as
    a temporary table (its name). `days_read`: the days part is in DAYS_SIDE_TABLE already
    (_ScopePlan.committed_reads), which is dropped here."""
    parts, params = [f"SELECT customer_id FROM {CHANGED_TABLE}"], []  # noqa: S608
    if plan.days is not None:
        if days_read:
            parts.append(f"SELECT customer_id FROM {DAYS_SIDE_TABLE}")  # noqa: S608
        else:
            parts.append(plan.days[0])
            params += plan.days[1]
    parts += plan.extra[0]
    params += plan.extra[1]
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {SCOPE_TABLE}")
        # In key order, with its key (no duplicates): the bucket rules then look the customers
        # up in the order of the customer and metrics tables' keys (segments.services).
        cur.execute(
            f"CREATE TEMPORARY TABLE {SCOPE_TABLE} AS SELECT DISTINCT customer_id FROM ("  # noqa: S608
            + " UNION ".join(parts)
            + ") AS scope ORDER BY customer_id",
            params,
        )
        if days_read:
            cur.execute(f"DROP TABLE {DAYS_SIDE_TABLE}")
        if connection.vendor == "postgresql":
            cur.execute(f"ALTER TABLE {SCOPE_TABLE} ADD PRIMARY KEY (customer_id)")
            cur.execute(f"ANALYZE {SCOPE_TABLE}")
    return SCOPE_TABLE


# --- aggregates kept from one run to the next --------------------------------------------------

BEFORE_TABLE = "segments_tmp_before"  # images of the metrics rows this run writes
AGGREGATES_VERSION = 1  # of the JSON in JobRun.aggregates


def _previous_aggregates(last: JobRun | None) -> selectors.RoiAggregates | None:
    """The aggregates the last successful run stored, read again once other writers of the
    metrics table are locked out; None when there are none to move (SQLite, cleared by another
    writer's trigger, another format)."""
    if connection.vendor != "postgresql" or last is None:
        return None
    stored = JobRun.objects.filter(pk=last.pk).values_list("aggregates", flat=True).first()
    if (
        not stored
        or stored.get("version") != AGGREGATES_VERSION
        or stored.get("as_of") != last.as_of.isoformat()
    ):
        return None
    return selectors.RoiAggregates.from_json(stored["sums"])


def _ranked(aggregates: selectors.RoiAggregates) -> dict:
    """The rows each global rank counted (crm.metrics RANKS) when the aggregates were taken:
    every metrics row for the value decile, the rows served for the suggested effort."""
    rows = aggregates.buckets.values()
    return {
        "decile": sum(row["customers"] for row in rows),
        "effort": sum(row["served"] or 0 for row in rows),
    }


def _aggregates_store(run: JobRun, *, as_of: dt.date, aggregates) -> None:
    """Keep this run's aggregates for the next one (PostgreSQL: elsewhere nothing clears them
    when the metrics table is written outside the job), and only this run's."""
    if connection.vendor != "postgresql":
        return
    JobRun.objects.exclude(pk=run.pk).filter(aggregates__isnull=False).update(aggregates=None)
    JobRun.objects.filter(pk=run.pk).update(
        aggregates={
            "version": AGGREGATES_VERSION,
            "as_of": as_of.isoformat(),
            "sums": aggregates.to_json(),
        }
    )


# --- the job ---------------------------------------------------------------------------------


def _memberships_refresh(
    *, as_of: dt.date, scope_table: str | None, before_images: str | None
) -> dict:
    from .services import bucket_copies_repair, memberships_refresh

    result = memberships_refresh(as_of=as_of, scope_table=scope_table, before_images=before_images)
    if scope_table is not None:  # the bucket copy of metrics rows created tonight
        bucket_copies_repair(customers_table=NEW_TABLE, before_images=before_images)
    evaluated = sum(result.get("counts", {}).values())
    return {"entered": result.get("entered"), "left": result.get("left"), "evaluated": evaluated}


def roi_recalculate(
    *, as_of: dt.date | str | None = None, full: bool = False, progress: Progress | None = None
) -> JobRun:
    """Run the nightly ROI job for `as_of` (default today) and return its JobRun.

    Steps, all inside one transaction so that a failure leaves the previous metrics,
    memberships and snapshots visible: refresh crm metrics (incremental by default: customers
    touched since the last successful run plus those whose windows moved; full when asked,
    when there is no earlier successful run, when `as_of` precedes it, or when the last full
    run is FULL_EVERY_DAYS or more before `as_of`), refresh bucket
    membership, replace the snapshots of `as_of`, precompute the whale curve and cohorts.
    The ROI sums come from one aggregation of the metrics table, or in an incremental run on
    PostgreSQL from the last run's sums (JobRun.aggregates) moved by the rows this run wrote,
    imaged before each write; other writers of the metrics table wait for the run to commit
    (readers do not), and any write outside the job clears the stored sums.

    Two runs never overlap: a PostgreSQL advisory lock and a "one running JobRun" unique
    index. A run that finds another in progress is not started; it is recorded as failed with
    that reason and returned (no exception). A run that fails is recorded as failed with the
    error, and the exception is re-raised. Raises ValidationError for a malformed or future
    date (nothing recorded). `progress`, if given, is called with each step's name.

    Called outside any transaction on PostgreSQL, the metrics refresh shares its reads of the
    order and interaction tables with a second connection (crm.side_query); inside a caller's
    transaction it stays on one, because a second connection could not see the caller's
    uncommitted rows.
    """
    as_of = parse_as_of(as_of)
    # Outside any caller's transaction everything the run reads is committed, so a second
    # connection may share the work (see crm.side_query).
    concurrent = connection.vendor == "postgresql" and not connection.in_atomic_block
    succeeded = JobRun.objects.filter(status=JobRun.Status.SUCCEEDED).order_by("-started_at")
    last = succeeded.first()
    last_full = succeeded.filter(mode=JobRun.Mode.FULL).values_list("as_of", flat=True).first()
    if (
        full
        or last is None
        or last.counts.get("metrics_version") != METRICS_VERSION
        or as_of < last.as_of
        or last_full is None
        or (as_of - last_full).days >= FULL_EVERY_DAYS
    ):
        mode = JobRun.Mode.FULL
    else:
        mode = JobRun.Mode.INCREMENTAL

    with _advisory_lock() as acquired:
        if not acquired:
            return _busy_run(as_of, mode)
        _clear_stale_runs()
        try:
            with transaction.atomic():  # a savepoint: the refusal must not break a caller's
                run = JobRun.objects.create(as_of=as_of, mode=mode, status=JobRun.Status.RUNNING)
        except IntegrityError:
            return _busy_run(as_of, mode)
        try:
            counts = _watermarks()
            counts["metrics_version"] = METRICS_VERSION
            counts["buckets"] = _bucket_signature()
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    with connection.cursor() as cur:  # this batch only: sorts in memory, and
                        cur.execute("SET LOCAL work_mem = '256MB'")  # no JIT, whose compile
                        # time the big CTEs never repay (but the full staging's: _stage_full)
                        cur.execute("SET LOCAL jit = off")
                        # The tables the job reads are cached: an index lookup costs about
                        # what a sequential page does, so a few thousand customers are
                        # looked up one by one instead of hashing a whole table.
                        cur.execute("SET LOCAL random_page_cost = 1.1")
                        # ANALYZE of the job's temporary tables samples 3,000 rows, not 30,000:
                        # they are keyed by customer, and a row count is what their joins need.
                        cur.execute("SET LOCAL default_statistics_target = 10")
                        # This transaction's writes of the metrics table are the job's (the
                        # trigger of migration 0008 clears stored aggregates on any other),
                        # and no one else writes it until commit (readers still read): the
                        # aggregates stored below are those of the table as committed.
                        cur.execute("SET LOCAL segments.roi_job = 'on'")
                        with planner_setting(cur, "lock_timeout", LOCK_WAIT):
                            cur.execute(
                                f"LOCK TABLE {CustomerMetrics._meta.db_table} IN EXCLUSIVE MODE"
                            )
                previous = None
                if mode == JobRun.Mode.INCREMENTAL:
                    previous = _previous_aggregates(last)
                before = BEFORE_TABLE if previous is not None else None
                if before:
                    with connection.cursor() as cur:
                        before_images_create(cur, before)
                if progress:
                    progress("metrics")
                ids, events_after = None, None
                if mode == JobRun.Mode.INCREMENTAL:
                    ids = touched_customer_ids(last=last, as_of=as_of, concurrent=concurrent)
                    events_after = {
                        "order": last.counts.get("max_order_id", 0),
                        "interaction": last.counts.get("max_interaction_id", 0),
                    }

                computed = {}  # what memberships() found for the steps after the refresh
                plan = None
                if mode == JobRun.Mode.INCREMENTAL:
                    plan = _membership_scope_plan(
                        last=last, as_of=as_of, signature=counts["buckets"]
                    )
                # Read by the refresh's second connection while this one writes, if it has one.
                committed_reads = plan.committed_reads() if plan and concurrent else []

                def memberships():
                    if progress:
                        progress("memberships")
                    scope = None
                    if plan is not None:
                        scope = _membership_scope(plan, days_read=bool(committed_reads))
                    if connection.vendor == "postgresql" and scope is None:
                        # The membership refresh reads a freshly filled temporary table and
                        # membership tables that may still be empty (first run): without
                        # statistics PostgreSQL picks nested loops whose inner side grows
                        # during the statement (quadratic; minutes at 100k customers). Hash
                        # joins only.
                        with connection.cursor() as cur:
                            cur.execute("SET LOCAL enable_nestloop = off")
                    counts["memberships"] = _memberships_refresh(
                        as_of=as_of, scope_table=scope, before_images=before
                    )
                    if connection.vendor == "postgresql":
                        with connection.cursor() as cur:
                            cur.execute("SET LOCAL enable_nestloop = on")
                    if concurrent:  # the run's own transaction, which ends with the run
                        with connection.cursor() as cur:
                            # The foreign keys of the rows written so far (memberships moved,
                            # metrics rows created) are deferred to the commit: checked here,
                            # a full run checks them while its second connection still works,
                            # not after it (a night's moves: about 0.27 s at commit). Not in
                            # a caller's transaction, whose own checks would move too.
                            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
                    if not before:  # the metrics and memberships alone, grouped
                        computed["aggregates"] = selectors.roi_aggregates(
                            as_of=as_of, payback=False
                        )
                        # With the payback days stored so far: those a full run's second
                        # connection finds to differ are moved in afterwards.
                        computed["payback"] = selectors.roi_payback(as_of=as_of)

                # The memberships and the ROI sums read the refreshed metrics, but neither the
                # payback days nor the cohort table: the refresh runs them while its second
                # connection computes those. The payback histogram is grouped afterwards.
                counts["customers_refreshed"] = metrics_refresh(
                    as_of=as_of,
                    customer_ids=ids,
                    events_after=events_after,
                    concurrent=concurrent,
                    before_images=before,
                    ranked_before=_ranked(previous) if before else None,
                    meanwhile=memberships,
                    committed_reads=committed_reads,
                )
                if not before:  # the payback days written since the histogram was grouped
                    computed["payback"] = selectors.roi_payback_moved(
                        computed["payback"], moved=PAYBACK_MOVED_TABLE
                    )
                with connection.cursor() as cur:
                    for name in (SCOPE_TABLE, CHANGED_TABLE, NEW_TABLE, PAYBACK_MOVED_TABLE):
                        cur.execute(f"DROP TABLE IF EXISTS {name}")
                if progress:
                    progress("snapshots")
                if before:  # last run's sums moved by the rows this run wrote
                    aggregates = selectors.roi_aggregates_moved(
                        previous, as_of=as_of, previous_as_of=last.as_of, before_images=before
                    )
                    with connection.cursor() as cur:
                        cur.execute(f"SELECT COUNT(*) FROM {before}")  # noqa: S608
                        counts["aggregates_moved_by"] = cur.fetchone()[0]
                        cur.execute(f"DROP TABLE {before}")
                else:
                    aggregates = computed["aggregates"]
                    aggregates.payback = computed["payback"]
                _aggregates_store(run, as_of=as_of, aggregates=aggregates)
                if connection.vendor == "postgresql":  # SET LOCAL outlives a savepoint: a
                    with connection.cursor() as cur:  # caller's later writes are not the job's
                        cur.execute("SET LOCAL segments.roi_job = 'off'")
                counts["snapshots"] = snapshots_write(
                    as_of=as_of, job_run=run, aggregates=aggregates
                )
                if progress:
                    progress("reports")
                # Screen data computed once per run instead of on every page view.
                whale = (
                    selectors.whale_from_bins(aggregates.whale)
                    if aggregates.whale is not None
                    else selectors.whale_curve()
                )
                reports = {
                    "whale": whale,
                    "cohorts": selectors.cohort_triangle(today=as_of, sizes=aggregates.cohorts),
                }
        except Exception as exc:
            logger.exception("ROI run %s for %s failed", run.pk, as_of)
            run.status = JobRun.Status.FAILED
            run.finished_at = timezone.now()
            run.error = f"{type(exc).__name__}: {exc}"[:4000]
            try:
                run.save(update_fields=["status", "finished_at", "error"])
            except Exception:  # the database itself may be what failed; keep the first error
                logger.exception("could not record the failure of ROI run %s", run.pk)
            raise
        run.status = JobRun.Status.SUCCEEDED
        run.finished_at = timezone.now()
        run.counts = counts
        run.reports = reports
        run.save(update_fields=["status", "finished_at", "counts", "reports"])
        return run
