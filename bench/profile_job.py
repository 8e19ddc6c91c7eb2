"""Per-statement profile of the nightly ROI job on the kept benchmark database.

Runs the benchmark's nightly pair as bench_job does (tables prewarmed, yesterday's full run,
VACUUM, then today's incremental one after 1 % of customers got a new order and a new
interaction, removed again afterwards; --apart: the orders to 1 %, the interactions to another
1 %) and prints, for each run, the slowest statements of the job's own connection with their
wall time, and the time spent waiting for the second connection (crm.side_query). Nothing is
written to bench/RESULTS.md: this is a tool for finding where the time goes, not a benchmark.

    KEEP_PGDATA=$PWD/bench/data/pgdata PG_SHARED_BUFFERS=6GB \
        scripts/with-services.sh .venv/bin/python bench/profile_job.py \
        [--only full|incremental] [--timeline MS] [--explain MS] [--apart]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _shape(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()[:150]


def profile(
    label: str, call, top: int, explain_ms: int | None = None, timeline_ms: int | None = None
) -> None:
    from django.db import connection, connections

    from crm import side_query

    timings: list[tuple[float, str]] = []
    began_at: dict[int, float] = {}  # index in timings -> start, from the run's start

    def wrapper(execute, sql, params, many, context):
        at = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            began_at[len(timings)] = at - started
            timings.append((time.perf_counter() - at, _shape(sql)))

    def timed(method, seconds: list[float]):
        def method_timed(self):
            started = time.perf_counter()
            try:
                return method(self)
            finally:
                seconds.append(time.perf_counter() - started)

        return method_timed

    waited: list[float] = []
    commits: list[float] = []
    sides: list[tuple[float, float, str]] = []  # (started, finished, first statement)
    original_run = side_query.SideQuery._run

    def run_timed(self):
        began = time.perf_counter()
        try:
            return original_run(self)
        finally:
            last = self._statements[-1][0] if self._statements else ""
            sides.append((began - started, time.perf_counter() - started, _shape(last)[:90]))

    # Each statement of a second connection: (started, finished, statement), from the start.
    side_statements: list[tuple[float, float, str]] = []
    original_execute = side_query.SideQuery._execute_statements

    def execute_timed(self, cursor):
        execute = cursor.execute

        def timed_execute(sql, params=None):
            at = time.perf_counter()
            try:
                return execute(sql, params)
            finally:
                side_statements.append(
                    (at - started, time.perf_counter() - started, _shape(sql)[:90])
                )

        cursor.execute = timed_execute
        try:
            return original_execute(self, cursor)
        finally:
            cursor.execute = execute

    side_query.SideQuery._run = run_timed
    side_query.SideQuery._execute_statements = execute_timed
    original = side_query.SideQuery.result
    wrapper_class = type(connections["default"])
    original_commit = wrapper_class._commit
    side_query.SideQuery.result = timed(original, waited)
    original_milestone = side_query.SideQuery.milestone_wait
    side_query.SideQuery.milestone_wait = timed(original_milestone, waited)
    wrapper_class._commit = timed(original_commit, commits)
    if explain_ms is not None:  # plans of the slow statements, as notices to this client
        connection.ensure_connection()
        connection.connection.add_notice_handler(lambda d: print(d.message_primary, flush=True))
        with connection.cursor() as cur:
            cur.execute("LOAD 'auto_explain'")
            cur.execute("SET auto_explain.log_level = 'notice'")
            cur.execute("SET auto_explain.log_analyze = on")
            cur.execute("SET auto_explain.log_timing = off")
            cur.execute("SET auto_explain.log_nested_statements = on")
            cur.execute(
                "SELECT set_config('auto_explain.log_min_duration', %s, false)", [str(explain_ms)]
            )
    started = time.perf_counter()
    try:
        with connection.execute_wrapper(wrapper):
            job = call()
    finally:
        side_query.SideQuery.result = original
        side_query.SideQuery.milestone_wait = original_milestone
        side_query.SideQuery._run = original_run
        side_query.SideQuery._execute_statements = original_execute
        wrapper_class._commit = original_commit
    total = time.perf_counter() - started
    print(f"\n== {label}: {total:.2f} s, {len(timings)} statements, {job.counts}"[:400])
    waits = ", ".join(f"{w:.2f}" for w in waited) or "none"
    print(f"   waiting for the second connection: {sum(waited):.2f} s ({waits})")
    print(
        f"   statements {sum(t for t, _ in timings):.2f} s, commits {sum(commits):.2f} s "
        f"({', '.join(f'{c:.3f}' for c in commits) or 'none'})"
    )
    for began, finished, sql in sorted(sides):
        print(f"   second connection {began:6.2f} -> {finished:6.2f} s: {sql}")
    for began, finished, sql in side_statements:  # its long statements
        if finished - began >= 0.5:
            print(f"   second connection {began:6.2f} -> {finished:6.2f} s: {sql}")
    for index, (seconds, sql) in enumerate(timings):  # this connection's long statements
        if seconds >= 0.5:
            at = began_at[index]
            print(f"   this connection   {at:6.2f} -> {at + seconds:6.2f} s: {sql[:90]}")
    for seconds, sql in sorted(timings, reverse=True)[:top]:
        print(f"   {seconds:7.3f}  {sql}")
    if timeline_ms is not None:  # this connection's statements in the order they ran
        print("   this connection's timeline:")
        for index, (seconds, sql) in enumerate(timings):
            if seconds * 1000 >= timeline_ms:
                print(f"   {began_at[index]:6.2f} +{seconds:6.3f}  {sql[:110]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["full", "incremental"])
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--explain", type=int, metavar="MS", help="print the plans of statements over MS ms"
    )
    parser.add_argument(
        "--timeline",
        type=int,
        metavar="MS",
        help="print this connection's statements over MS ms in the order they ran",
    )
    parser.add_argument(
        "--apart",
        action="store_true",
        help="orders to 1 %% of the customers, interactions to another 1 %% (2 %% touched)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key")  # noqa: S105
    os.environ.setdefault("DEBUG", "0")
    import django

    django.setup()
    from django.utils import timezone

    from bench.bench_job import _event_watermarks, _prewarm, _touch, _untouch, _vacuum
    from segments.jobs import roi_recalculate

    as_of = timezone.localdate()
    warm_mb, warm_s = _prewarm()
    print(f"prewarmed {warm_mb:,.0f} MB in {warm_s:.1f} s")
    if args.only != "incremental":
        profile(
            "full run",
            lambda: roi_recalculate(as_of=as_of - dt.timedelta(days=1), full=True),
            args.top,
            args.explain,
            args.timeline,
        )
    if args.only != "full":
        print(f"vacuumed in {_vacuum():.1f} s")
        watermarks = _event_watermarks()
        touched = _touch(0.01, as_of, apart=args.apart)
        try:
            profile(
                f"incremental run ({touched:,} new rows)",
                lambda: roi_recalculate(as_of=as_of),
                args.top,
                args.explain,
                args.timeline,
            )
        finally:
            _untouch(watermarks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
