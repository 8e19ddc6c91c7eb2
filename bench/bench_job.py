"""The nightly ROI job at reference scale: full and incremental runs of
segments.jobs.roi_recalculate, and the naive per-customer ORM loop it replaces.

Target (issue 3): the set-based metrics refresh is at least 50x faster than a per-customer ORM
loop. The loop runs on LOOP_CUSTOMERS customers (inside a transaction that is rolled back) and
is scaled linearly to the full customer count.

Run through `make bench` (bench/run.py calls run(ctx)), or on its own:
    scripts/with-services.sh .venv/bin/python bench/bench_job.py --customers 100000
(KEEP_PGDATA=dir reuses a cluster between runs.)
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOOP_CUSTOMERS = 20_000
INCREMENTAL_CHANGED = 0.01  # share of customers given a new order and interaction before the run


class _Rollback(Exception):
    pass


def orm_loop(customer_ids: list[int], as_of: dt.date) -> None:
    """What the job would cost done the obvious way: per customer, two aggregate queries and
    an update_or_create of its metrics row (rolled back afterwards)."""
    from decimal import Decimal

    from django.conf import settings
    from django.db import transaction
    from django.db.models import Count, F, Max, Min, Q, Sum
    from django.db.models.functions import Coalesce

    from crm.metrics import metrics_params
    from crm.models import CustomerMetrics, Interaction, Order

    p = metrics_params(as_of)
    rate = settings.CRM_STAFF_COST_PER_HOUR
    try:
        with transaction.atomic():
            for cid in customer_ids:
                o = Order.objects.filter(customer_id=cid, placed_at__lt=p["end_ts"]).aggregate(
                    n=Count("id"),
                    nw=Count("id", filter=Q(placed_at__gte=p["window_start"])),
                    first=Min("placed_at"),
                    last=Max("placed_at"),
                    rev=Sum("revenue"),
                    mar=Sum("margin"),
                    mar_w=Sum("margin", filter=Q(placed_at__gte=p["window_start"])),
                )
                i = Interaction.objects.filter(
                    customer_id=cid, occurred_at__lt=p["end_ts"]
                ).aggregate(
                    total_minutes=Sum("minutes"),
                    cost=Sum(F("minutes") * Coalesce("staff__hourly_cost", rate)),
                )
                cost = (i["cost"] or Decimal(0)) / 60
                CustomerMetrics.objects.update_or_create(
                    customer_id=cid,
                    defaults={
                        "as_of": as_of,
                        "order_count": o["n"],
                        "orders_window": o["nw"],
                        "first_order_at": o["first"],
                        "last_order_at": o["last"],
                        "revenue_lifetime": o["rev"] or 0,
                        "margin_lifetime": o["mar"] or 0,
                        "margin_window": o["mar_w"] or 0,
                        "minutes_lifetime": i["total_minutes"] or 0,
                        "cost_to_serve_lifetime": round(cost, 2),
                        "contribution_lifetime": round((o["mar"] or 0) - cost, 2),
                    },
                )
            raise _Rollback
    except _Rollback:
        pass


def _touch(share: float, as_of: dt.date, *, apart: bool = False) -> int:
    """Give `share` of the customers a new order and a new interaction (set-based); `apart`:
    the orders to `share` of the customers and the interactions to another `share` (twice as
    many customers touched: the benchmark's case before 2026-12-07). Returns the rows added."""
    from django.db import connection

    when = dt.datetime.combine(as_of, dt.time(10), tzinfo=dt.UTC)
    with connection.cursor() as cur:
        cur.execute("SELECT MIN(id) FROM crm_user")
        staff_id = cur.fetchone()[0]
        step = max(int(1 / share), 1)
        cur.execute(
            "INSERT INTO crm_order (customer_id, external_id, placed_at, channel, revenue, "
            "cost_of_goods, margin, brand, category) "
            "SELECT id, '', %s, 'online', 100, 60, 40, '', '' FROM crm_customer WHERE id %% %s = 0",
            [when, step],
        )
        touched = cur.rowcount
        cur.execute(
            "INSERT INTO crm_interaction (customer_id, staff_id, occurred_at, channel, direction, "
            "minutes, summary, outcome, external_id, created_at) "
            "SELECT id, %s, %s, 'phone', 'inbound', 12, '', 'resolved', '', now() "
            "FROM crm_customer WHERE id %% %s = %s",
            [staff_id, when, step, 1 if apart and step > 1 else 0],
        )
        touched += cur.rowcount
    return touched


def _event_watermarks() -> tuple[int, int]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT COALESCE((SELECT MAX(id) FROM crm_order), 0), "
            "COALESCE((SELECT MAX(id) FROM crm_interaction), 0)"
        )
        return cur.fetchone()


def _untouch(watermarks: tuple[int, int]) -> int:
    """Delete the orders and interactions _touch added (ids above `watermarks`), so that a
    kept reference database stays as generated from one run to the next: otherwise the same
    customers gain an order or an interaction each run, and the incremental run measures
    heavier and heavier customers."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("DELETE FROM crm_order WHERE id > %s", [watermarks[0]])
        removed = cur.rowcount
        cur.execute("DELETE FROM crm_interaction WHERE id > %s", [watermarks[1]])
        return removed + cur.rowcount


# The tables the job reads and writes (and their indexes): held in shared buffers on a server
# that runs all day, but not in the benchmark cluster just started for the run.
JOB_TABLES = (
    "crm_customer",
    "crm_order",
    "crm_interaction",
    "crm_customermetrics",
    "crm_socialprofile",
    "crm_user",
    "crm_rankboundary",
    "crm_cohortcontribution",
    "segments_bucket",
    "segments_currentmembership",
    "segments_bucketmembership",
)


def _prewarm() -> tuple[float, float]:
    """Load the job's tables and indexes into shared buffers (pg_prewarm, shipped with
    PostgreSQL): the job then runs as on a server that has been up, not on a cluster just
    started by the harness, whose first reads come from the OS cache. Returns (MB, s)."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        cur.execute(
            "SELECT COALESCE(SUM(pg_prewarm(c.oid)), 0) * current_setting('block_size')::int "
            "FROM pg_class c LEFT JOIN pg_index x ON x.indexrelid = c.oid "
            "LEFT JOIN pg_class t ON t.oid = x.indrelid "
            "WHERE c.relkind IN ('r', 'i') AND COALESCE(t.relname, c.relname) = ANY(%s)",
            [list(JOB_TABLES)],
        )
        size = cur.fetchone()[0]
    return size / 2**20, time.perf_counter() - started


def _vacuum() -> float:
    """VACUUM (ANALYZE) the tables the job writes, as autovacuum does in the day between two
    nightly runs: without it, the incremental run right after the full one shares the two
    cores with autovacuum of the rows the full run rewrote. Returns seconds."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cur:
        for table in JOB_TABLES:
            cur.execute(f"VACUUM (ANALYZE) {table}")
    return time.perf_counter() - started


def run(ctx) -> list:
    from django.utils import timezone

    from bench.harness import Result
    from crm.models import Customer
    from segments.jobs import roi_recalculate

    customers = ctx["customers"]
    as_of = timezone.localdate()
    steps: dict[str, float] = {}
    last = {"name": None, "at": 0.0}

    def progress(step: str) -> None:
        now = time.perf_counter()
        if last["name"]:
            steps[last["name"]] = now - last["at"]
        last.update(name=step, at=now)

    def timed_run(day, **kw):
        steps.clear()
        last.update(name=None, at=0.0)
        started = time.perf_counter()
        job = roi_recalculate(as_of=day, progress=progress, **kw)
        total = time.perf_counter() - started
        if last["name"]:
            steps[last["name"]] = time.perf_counter() - last["at"]
        assert job.status == "succeeded", job.error
        return total, dict(steps), job

    warm_mb, warm_s = _prewarm()
    print(f"  prewarmed {warm_mb:,.0f} MB of the job's tables and indexes in {warm_s:.1f} s")

    def nightly_pair(apart: bool):
        """Last night's full run, then tonight's incremental one: the realistic nightly pair."""
        print(f"  full run over {customers:,} customers ...", flush=True)
        full = timed_run(as_of - dt.timedelta(days=1), full=True)
        print(f"    {full[0]:.1f} s {full[1]}", flush=True)
        vacuum_s = _vacuum()
        print(f"  vacuumed the job's tables in {vacuum_s:.1f} s (the day between the runs)")
        watermarks = _event_watermarks()
        touched = _touch(INCREMENTAL_CHANGED, as_of, apart=apart)
        try:
            print(f"  incremental run after {touched:,} new orders/interactions ...", flush=True)
            inc = timed_run(as_of)
            print(f"    {inc[0]:.1f} s {inc[1]} {inc[2].counts.get('customers_refreshed')}")
        finally:  # the next run's full run recomputes everything from the data as generated
            print(f"  removed the {_untouch(watermarks):,} rows added for it", flush=True)
        return full, inc, vacuum_s

    # The case: 1 % of the customers touched, each with a new order and interaction.
    (full_s, full_steps, _full_job), (inc_s, inc_steps, inc_job), vacuum_s = nightly_pair(False)
    # The case the earlier rounds measured: the orders to 1 %, the interactions to another 1 %.
    (again_s, _s, _j), (apart_s, _s, apart_job), _v = nightly_pair(True)

    sample = list(Customer.objects.order_by("id").values_list("id", flat=True)[:LOOP_CUSTOMERS])
    print(f"  per-customer ORM loop over {len(sample):,} customers ...", flush=True)
    started = time.perf_counter()
    orm_loop(sample, as_of)
    loop_s = time.perf_counter() - started
    loop_scaled = loop_s * customers / max(len(sample), 1)
    metrics_s = full_steps.get("metrics", full_s)
    speedup = loop_scaled / metrics_s if metrics_s else None
    print(f"    {loop_s:.1f} s -> {loop_scaled:,.0f} s scaled; {speedup:.0f}x", flush=True)

    ctx.setdefault("notes", []).append(
        f"ROI job at {customers:,} customers, its tables and indexes prewarmed into shared "
        f"buffers ({warm_mb:,.0f} MB) and vacuumed between the two runs ({vacuum_s:.1f} s): "
        f"full {full_s:.1f} s "
        + ", ".join(f"{k} {v:.1f} s" for k, v in full_steps.items())
        + f"; incremental {inc_s:.1f} s ({inc_job.counts.get('customers_refreshed'):,} customers "
        + "re-aggregated; "
        + ", ".join(f"{k} {v:.1f} s" for k, v in inc_steps.items())
        + f"); ORM loop {loop_s:.1f} s for {len(sample):,} customers, "
        f"scaled {loop_scaled:,.0f} s."
    )
    from bench.harness import peak_rss_mb

    whole_speedup = loop_scaled / full_s if full_s else None
    return [
        Result(f"ROI job full run, {customers:,} customers", full_s, "s", 15.0),
        Result("  of which metrics refresh (full)", metrics_s, "s", None),
        Result(
            f"ROI job incremental run, next day, {INCREMENTAL_CHANGED:.0%} of customers "
            f"touched ({inc_job.counts.get('customers_refreshed'):,} re-aggregated)",
            inc_s,
            "s",
            3.0,
        ),
        Result("ROI job full run, again", again_s, "s", None),
        Result(
            f"  incremental, orders to {INCREMENTAL_CHANGED:.0%} and interactions to another "
            f"{INCREMENTAL_CHANGED:.0%} ({apart_job.counts.get('customers_refreshed'):,} "
            "re-aggregated; before 2026-12-07)",
            apart_s,
            "s",
            None,
        ),
        # The job runs in this process: its peak includes the harness and Django themselves.
        Result("ROI job: peak memory of the process", peak_rss_mb(), "MB", 300.0),
        Result(
            f"whole full job vs per-customer ORM loop (scaled from {len(sample):,})",
            whole_speedup,
            "x",
            50.0,
            lower_is_better=False,
        ),
        Result(
            f"metrics: set-based SQL vs per-customer ORM loop (scaled from {len(sample):,})",
            speedup,
            "x",
            50.0,
            lower_is_better=False,
        ),
    ]


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key")  # noqa: S105
    os.environ.setdefault("DEBUG", "0")
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("Needs PostgreSQL: run through scripts/with-services.sh.")
        return 2
    import django

    django.setup()
    from django.core.management import call_command

    from bench.harness import format_table
    from crm.models import Customer

    call_command("migrate", verbosity=0)
    if not Customer.objects.exists():
        started = time.perf_counter()
        call_command("generate_reference_data", customers=args.customers, seed=args.seed)
        print(f"generated in {time.perf_counter() - started:.1f} s", flush=True)
    ctx = {"customers": Customer.objects.count()}
    results = run(ctx)
    print(format_table(results))
    for note in ctx.get("notes", []):
        print("-", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
