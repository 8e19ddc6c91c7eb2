"""`make bench`: reference data, every benchmark, one table, bench/RESULTS.md.

Runs inside scripts/with-services.sh (private PostgreSQL and Redis; DATABASE_URL set). The
cluster lives in bench/data/pgdata and is reused between runs, so the reference data is
generated once. Options:
  --customers N   reference scale (default 1,000,000)
  --only NAME     run only these benchmark modules (lists, imports, job, surveys), repeatable
  --no-write      print the table without touching bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key")  # noqa: S105
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SESSION_COOKIE_SECURE", "0")

MODULES = ["lists", "imports", "job", "surveys"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", action="append", choices=MODULES)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print(
            "make bench needs PostgreSQL: run it through `make bench` (scripts/with-services.sh)."
        )
        return 2

    import django

    django.setup()
    from django.core.management import call_command, get_commands

    from bench import harness
    from crm.models import Customer

    call_command("migrate", verbosity=0)
    # DEBUG is off, as in production: templates need the collected, hashed static files.
    call_command("collectstatic", interactive=False, verbosity=0)
    have = Customer.objects.count()
    if have == 0:
        if "generate_reference_data" not in get_commands():
            print("generate_reference_data is not available; cannot build the reference data.")
            return 2
        print(
            f"Generating reference data: {args.customers:,} customers (seed {args.seed}) ...",
            flush=True,
        )
        started = time.perf_counter()
        call_command("generate_reference_data", customers=args.customers, seed=args.seed)
        generation_s = time.perf_counter() - started
        print(f"  done in {generation_s:,.1f} s", flush=True)
    else:
        generation_s = None
        print(
            f"Reusing reference data: {have:,} customers already in bench/data/pgdata.", flush=True
        )
        if have != args.customers:
            print(
                f"  (asked for {args.customers:,}; delete bench/data to regenerate at that scale)"
            )

    from crm.models import CustomerMetrics

    if not CustomerMetrics.objects.exists() and "recalculate_roi" in get_commands():
        # Screens are measured as on a morning after the nightly job, as in production.
        print("Running the nightly job once (metrics, buckets, snapshots) ...", flush=True)
        call_command("recalculate_roi", full=True)

    ctx = {"customers": Customer.objects.count(), "args": args, "root": ROOT}
    results: list[harness.Result] = []
    notes: list[str] = []
    if generation_s is not None:
        results.append(
            harness.Result(
                f"generate_reference_data, {ctx['customers']:,} customers", generation_s, "s", 300.0
            )
        )
    for name in args.only or MODULES:
        module_name = f"bench.bench_{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            notes.append(f"{module_name}: not available ({exc}).")
            continue
        print(f"== {name} ==", flush=True)
        try:
            results.extend(module.run(ctx))
        except Exception as exc:  # a broken benchmark is reported, the others still run
            traceback.print_exc()
            notes.append(f"{module_name} failed: {exc!r}")
        for note in ctx.pop("notes", []):
            notes.append(note)

    table = harness.format_table(results)
    print()
    print(table)
    for note in notes:
        print(f"- {note}")
    if not args.no_write:
        import django as dj
        import psycopg
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            pg_version = cursor.fetchone()[0]
            cursor.execute("SHOW shared_buffers")
            shared_buffers = cursor.fetchone()[0]
            durability = []
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                cursor.execute(f"SHOW {setting}")
                durability.append(f"{setting} {cursor.fetchone()[0]}")
        settings = ", ".join([f"shared_buffers {shared_buffers}", *durability])
        versions = {
            "Django": dj.get_version(),
            "PostgreSQL": f"{pg_version} ({settings})",
            "psycopg": psycopg.__version__,
        }
        scale = (
            f"{ctx['customers']:,} customers, "
            f"{_count('crm_interaction'):,} interactions, {_count('crm_order'):,} orders, "
            f"{_count('segments_bucket'):,} buckets"
        )
        harness.write_results(results, scale=scale, versions=versions, notes=notes)
        print(f"\nWritten to {harness.RESULTS_PATH.relative_to(ROOT)}")
    return 0 if all(r.passed is not False for r in results) else 1


def _count(table: str) -> int:
    """The planner's row estimate of a big table; an exact COUNT(*) for a small one, whose
    estimate is 0 until autovacuum first analyzes it (20 buckets never reach its threshold)."""
    from django.db import connection

    with connection.cursor() as cursor:
        try:
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [table])  # noqa: S608
            row = cursor.fetchone()
            estimate = max(int(row[0]), 0) if row else 0
            if estimate < 100_000:
                cursor.execute(f'SELECT COUNT(*) FROM "{table}"')  # noqa: S608
                estimate = cursor.fetchone()[0]
        except Exception:
            return 0
    return estimate


if __name__ == "__main__":
    sys.exit(main())
