"""The nightly ROI job: metrics, bucket membership, then one ROI snapshot per bucket and date.

`roi_recalculate` is the one entry point; the Celery task, the management command and the
"recalculate now" button all call it. Everything heavy is set-based SQL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterator

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _

from crm.metrics import metrics_params, metrics_refresh
from crm.models import Customer, CustomerMetrics, Interaction, Order, SocialProfile, User

from . import selectors
from .models import Bucket, CurrentMembership, JobRun, RoiSnapshot

logger = logging.getLogger(__name__)

ADVISORY_LOCK_KEY = 724_311_002  # pg_try_advisory_lock key: one ROI run at a time
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
            f"(SELECT MAX(id) FROM {Interaction._meta.db_table})"
        )
        max_order, max_interaction = cur.fetchone()
    return {"max_order_id": max_order or 0, "max_interaction_id": max_interaction or 0}


def touched_customer_ids(*, last: JobRun, as_of: dt.date) -> list[int]:
    """Customers whose metrics may differ from the last successful run's, in one SQL query.

    Changed or created since that run started (customers, social profiles; orders and
    interactions above the id watermarks the run recorded, or created since), customers
    without a metrics row, and customers with an order or interaction that entered or left a
    time window between the two dates. Time-only columns (days since last order, status) of
    everyone else are advanced by metrics_refresh itself.
    """
    since = last.started_at
    prev, new = metrics_params(last.as_of), metrics_params(as_of)
    params = {
        "since": since,
        "max_order": int(last.counts.get("max_order_id", 0)),
        "max_interaction": int(last.counts.get("max_interaction_id", 0)),
        "prev_end": prev["end_ts"],
        "new_end": new["end_ts"],
        "prev_window": prev["window_start"],
        "new_window": new["window_start"],
        "prev_year": prev["year_start"],
        "new_year": new["year_start"],
    }
    customer, order = Customer._meta.db_table, Order._meta.db_table
    interaction, social = Interaction._meta.db_table, SocialProfile._meta.db_table
    metrics = CustomerMetrics._meta.db_table

    def edges(table: str, ts: str) -> str:
        return (
            f"SELECT customer_id FROM {table} WHERE "  # noqa: S608
            f"({ts} >= %(prev_end)s AND {ts} < %(new_end)s) "
            f"OR ({ts} >= %(prev_window)s AND {ts} < %(new_window)s) "
            f"OR ({ts} >= %(prev_year)s AND {ts} < %(new_year)s)"
        )

    sql = " UNION ".join(
        [
            f"SELECT id FROM {customer} WHERE updated_at >= %(since)s "  # noqa: S608
            "OR created_at >= %(since)s",
            f"SELECT customer_id FROM {social} WHERE updated_at >= %(since)s",  # noqa: S608
            f"SELECT customer_id FROM {order} WHERE id > %(max_order)s",  # noqa: S608
            f"SELECT customer_id FROM {interaction} "  # noqa: S608
            "WHERE id > %(max_interaction)s OR created_at >= %(since)s",
            f"SELECT c.id FROM {customer} c WHERE NOT EXISTS "  # noqa: S608
            f"(SELECT 1 FROM {metrics} m WHERE m.customer_id = c.id)",
            edges(order, "placed_at"),
            edges(interaction, "occurred_at"),
        ]
    )
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return [row[0] for row in cur.fetchall()]


# --- snapshots -------------------------------------------------------------------------------


def _local_date(expr: str) -> str:
    if connection.vendor == "postgresql":
        return f"({expr} AT TIME ZONE %(tz)s)::date"
    return f"date({expr})"


def _days_between(later: str, earlier: str) -> str:
    if connection.vendor == "postgresql":
        return f"({later} - {earlier})"
    return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"


def _snapshot_sql() -> str:
    """INSERT ... SELECT of one RoiSnapshot row per bucket (active or with members) and one for
    Unsegmented (bucket key 0 inside the query, NULL in the table)."""
    customer, order = Customer._meta.db_table, Order._meta.db_table
    interaction, user = Interaction._meta.db_table, User._meta.db_table
    metrics, current = CustomerMetrics._meta.db_table, CurrentMembership._meta.db_table
    bucket, snapshot = Bucket._meta.db_table, RoiSnapshot._meta.db_table
    pg = connection.vendor == "postgresql"
    true = "TRUE" if pg else "1"

    def since_acquisition(ts: str) -> str:
        # Events before the acquisition day never count: drop them before the per-day sort.
        # (SQLite keeps only the exact filter in "running"; its dates are UTC text.)
        if not pg:
            return ""
        return f" AND {ts} >= (e.acquisition_date::timestamp AT TIME ZONE %(tz)s)"

    # Cumulative contribution never exceeds the sum of positive order margins; when no order
    # margin and no staff cost is negative, that sum is the lifetime margin (just refreshed),
    # so customers below their CAC there cannot pay back and their events are never read.
    can_pay_back = " AND (%(no_negative)s = 0 OR mar_life >= acquisition_cost)"
    return f"""
INSERT INTO {snapshot} (date, bucket_id, bucket_name, customers, revenue, margin, cost_to_serve,
    contribution, roi, contribution_per_customer, share_of_total, avg_effort, avg_influence,
    nps, churn_rate, ltv_cac, payback_median_days, payback_share, job_run_id)
WITH base AS (
    SELECT c.id AS customer_id, COALESCE(cm.bucket_id, 0) AS bk,
        c.acquisition_date, c.acquisition_cost, c.service_effort, c.influence,
        COALESCE(m.revenue_window, 0) AS rev, COALESCE(m.margin_window, 0) AS mar,
        COALESCE(m.cost_to_serve_window, 0) AS cts,
        COALESCE(m.contribution_lifetime, 0) AS clife, m.status,
        COALESCE(m.margin_lifetime, 0) AS mar_life
    FROM {customer} c
    LEFT JOIN {current} cm ON cm.customer_id = c.id
    LEFT JOIN {metrics} m ON m.customer_id = c.id
), agg AS (
    SELECT bk, COUNT(*) AS customers, SUM(rev) AS revenue, SUM(mar) AS margin,
        SUM(cts) AS cost, SUM(mar) - SUM(cts) AS contribution,
        AVG(service_effort) AS avg_effort, AVG(influence) AS avg_influence,
        AVG(CASE WHEN status = 'churned' THEN 1.0 ELSE 0.0 END) AS churn_rate,
        SUM(clife) AS clife, SUM(acquisition_cost) AS cac
    FROM base GROUP BY bk
), eligible AS (
    SELECT customer_id, bk, acquisition_date, acquisition_cost FROM base
    WHERE acquisition_cost > 0 AND acquisition_date IS NOT NULL
      AND acquisition_date <= %(as_of)s
), candidates AS (
    SELECT customer_id, bk, acquisition_date, acquisition_cost FROM base
    WHERE acquisition_cost > 0 AND acquisition_date IS NOT NULL
      AND acquisition_date <= %(as_of)s{can_pay_back}
), events AS (
    SELECT e.customer_id, e.acquisition_date, e.acquisition_cost,
        {_local_date("o.placed_at")} AS day, o.margin AS amount
    FROM candidates e JOIN {order} o ON o.customer_id = e.customer_id
    WHERE o.placed_at < %(end_ts)s{since_acquisition("o.placed_at")}
    UNION ALL
    SELECT e.customer_id, e.acquisition_date, e.acquisition_cost,
        {_local_date("i.occurred_at")} AS day,
        -(i.minutes * COALESCE(u.hourly_cost, %(rate)s) / 60.0) AS amount
    FROM candidates e JOIN {interaction} i ON i.customer_id = e.customer_id
    JOIN {user} u ON u.id = i.staff_id
    WHERE i.occurred_at < %(end_ts)s{since_acquisition("i.occurred_at")}
), running AS (
    -- The default frame (RANGE ... CURRENT ROW) includes every event of the same day, so this
    -- is the cumulative contribution at the end of each day without a per-day GROUP BY; the
    -- acquisition columns ride along instead of being joined back (the bucket is joined
    -- after the per-customer minimum: narrower rows to sort).
    SELECT customer_id, acquisition_date, acquisition_cost, day,
        SUM(amount) OVER (PARTITION BY customer_id ORDER BY day) AS cum
    FROM events WHERE day >= acquisition_date
), paid_days AS (
    SELECT customer_id, MIN({_days_between("day", "acquisition_date")}) AS days
    FROM running WHERE cum >= acquisition_cost
    GROUP BY customer_id
), paid AS (
    SELECT p.customer_id, e.bk, p.days
    FROM paid_days p JOIN candidates e ON e.customer_id = p.customer_id
), ranked AS (
    SELECT bk, days, ROW_NUMBER() OVER (PARTITION BY bk ORDER BY days) AS rn,
        COUNT(*) OVER (PARTITION BY bk) AS n
    FROM paid
), medians AS (
    SELECT bk, ROUND(AVG(days)) AS median_days FROM ranked
    WHERE rn = (n + 1) / 2 OR rn = (n + 2) / 2 GROUP BY bk
), elig_counts AS (
    SELECT bk, COUNT(*) AS n_eligible FROM eligible GROUP BY bk
), paid_counts AS (
    SELECT bk, COUNT(*) AS n_paid FROM paid GROUP BY bk
), keys AS (
    SELECT id AS bk FROM {bucket} WHERE active = {true}
    UNION SELECT bk FROM agg
    UNION SELECT 0
), totals AS (
    SELECT SUM(contribution) AS total FROM agg
)
SELECT %(date)s, NULLIF(k.bk, 0), COALESCE(b.name, ''), COALESCE(a.customers, 0),
    COALESCE(a.revenue, 0), COALESCE(a.margin, 0), COALESCE(a.cost, 0),
    COALESCE(a.contribution, 0),
    CASE WHEN a.cost > 0 THEN ROUND((a.margin - a.cost) * 1.0 / a.cost, 4) END,
    CASE WHEN a.customers > 0 THEN ROUND(a.contribution * 1.0 / a.customers, 2) END,
    CASE WHEN t.total <> 0 THEN ROUND(COALESCE(a.contribution, 0) * 1.0 / t.total, 4) END,
    ROUND(a.avg_effort, 2), ROUND(a.avg_influence, 2), NULL,
    ROUND(a.churn_rate, 4),
    CASE WHEN a.cac > 0 THEN ROUND(a.clife * 1.0 / a.cac, 4) END,
    md.median_days,
    CASE WHEN ec.n_eligible > 0 THEN ROUND(COALESCE(pc.n_paid, 0) * 1.0 / ec.n_eligible, 4) END,
    %(job_run)s
FROM keys k
CROSS JOIN totals t
LEFT JOIN agg a ON a.bk = k.bk
LEFT JOIN {bucket} b ON b.id = k.bk
LEFT JOIN medians md ON md.bk = k.bk
LEFT JOIN elig_counts ec ON ec.bk = k.bk
LEFT JOIN paid_counts pc ON pc.bk = k.bk
"""  # noqa: S608


def _no_negative_sql() -> str:
    """True when no order up to the snapshot has a negative margin and no staff member a
    negative hourly cost: then cumulative contribution is bounded by the lifetime margin."""
    order, user = Order._meta.db_table, User._meta.db_table
    return (
        f"SELECT NOT EXISTS (SELECT 1 FROM {order} WHERE margin < 0 "  # noqa: S608
        f"AND placed_at < %(end_ts)s) AND NOT EXISTS (SELECT 1 FROM {user} WHERE hourly_cost < 0) "
        "AND %(rate)s >= 0"
    )


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


def snapshots_write(*, as_of: dt.date, job_run: JobRun | None = None) -> int:
    """Replace the ROI snapshots of `as_of` from the current metrics and memberships.

    Delete + insert inside one transaction: readers see the previous rows until commit, and a
    second call for the same date gives the same rows (idempotent, never duplicated).
    NPS is filled by the provider surveys registers (register_nps_provider), if any.
    Returns the number of rows written.
    """
    params = metrics_params(as_of)
    params.update(date=as_of, job_run=job_run.pk if job_run else None)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(_no_negative_sql(), params)
        params["no_negative"] = 1 if cur.fetchone()[0] else 0
        RoiSnapshot.objects.filter(date=as_of).delete()
        cur.execute(_snapshot_sql(), params)
        written = cur.rowcount
        _snapshots_fill_nps(as_of=as_of)
        return written


# --- the job ---------------------------------------------------------------------------------


def _memberships_refresh(*, as_of: dt.date) -> dict:
    try:
        from .services import memberships_refresh
    except ImportError as exc:  # pragma: no cover - only while segments.services is missing
        raise RuntimeError(
            "segments.services.memberships_refresh is missing; bucket membership cannot be "
            "refreshed."
        ) from exc
    # Every customer: rules read time-dependent and globally ranked fields (days since last
    # order, status, value decile) that change for customers outside any incremental scope.
    result = memberships_refresh(as_of=as_of, customer_ids=None)
    return {"entered": result.get("entered"), "left": result.get("left")}


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

    Two runs never overlap: a PostgreSQL advisory lock and a "one running JobRun" unique
    index. A run that finds another in progress is not started; it is recorded as failed with
    that reason and returned (no exception). A run that fails is recorded as failed with the
    error, and the exception is re-raised. Raises ValidationError for a malformed or future
    date (nothing recorded). `progress`, if given, is called with each step's name.
    """
    as_of = parse_as_of(as_of)
    succeeded = JobRun.objects.filter(status=JobRun.Status.SUCCEEDED).order_by("-started_at")
    last = succeeded.first()
    last_full = succeeded.filter(mode=JobRun.Mode.FULL).values_list("as_of", flat=True).first()
    if (
        full
        or last is None
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
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    with connection.cursor() as cur:  # this batch only: sorts in memory, and
                        cur.execute("SET LOCAL work_mem = '256MB'")  # no JIT, whose compile
                        cur.execute("SET LOCAL jit = off")  # time the big CTEs never repay
                if progress:
                    progress("metrics")
                ids = None
                if mode == JobRun.Mode.INCREMENTAL:
                    ids = touched_customer_ids(last=last, as_of=as_of)
                counts["customers_refreshed"] = metrics_refresh(as_of=as_of, customer_ids=ids)
                if progress:
                    progress("memberships")
                if connection.vendor == "postgresql":
                    # The membership refresh reads a freshly filled temporary table and
                    # membership tables that may still be empty (first run): without
                    # statistics PostgreSQL picks nested loops whose inner side grows during
                    # the statement (quadratic; minutes at 100k customers). Hash joins only.
                    with connection.cursor() as cur:
                        cur.execute("SET LOCAL enable_nestloop = off")
                counts["memberships"] = _memberships_refresh(as_of=as_of)
                if progress:
                    progress("snapshots")
                # Still hash/merge joins: the payback CTE joins most customers to all their
                # orders and interactions, which PostgreSQL (misjudging the CTE's size) would
                # otherwise do with millions of index probes.
                counts["snapshots"] = snapshots_write(as_of=as_of, job_run=run)
                if connection.vendor == "postgresql":
                    with connection.cursor() as cur:
                        cur.execute("SET LOCAL enable_nestloop = on")
                if progress:
                    progress("reports")
                # Heavy screen data computed once per run instead of on every page view.
                reports = {
                    "whale": selectors.whale_curve(),
                    "cohorts": selectors.cohort_triangle(today=as_of),
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
