"""CSV import throughput and memory: 1,000,000 customers, then 5,000,000 orders.

Each import runs as its own `manage.py import_*` process against a separate, freshly migrated
database (so the reference data is left alone), and its peak memory is read from that child's
own rusage. Target: >= 50,000 rows/s with validation; peak memory <= 500 MB, flat in file size
(checked by importing a file a tenth the size first and comparing peaks).
"""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import Result

CUSTOMERS = int(os.environ.get("BENCH_IMPORT_CUSTOMERS", 1_000_000))
ORDERS = int(os.environ.get("BENCH_IMPORT_ORDERS", 5_000_000))


def _write_customers(path: Path, n: int) -> None:
    rng = random.Random(7)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["external_id", "first_name", "last_name", "email", "city", "service_effort"])
        for i in range(n):
            w.writerow(
                [
                    f"C{i}",
                    f"First{i}",
                    f"Last{i}",
                    f"c{i}@example.com",
                    rng.choice(["Seoul", "Busan", "Austin"]),
                    rng.randint(1, 10),
                ]
            )


def _write_orders(path: Path, n: int, customers: int) -> None:
    rng = random.Random(8)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["customer_ref", "placed_at", "revenue", "channel", "category", "external_id"])
        for i in range(n):
            w.writerow(
                [
                    f"C{rng.randrange(customers)}",
                    f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    f"{rng.uniform(5, 500):.2f}",
                    rng.choice(["online", "store", "phone"]),
                    rng.choice(["shoes", "bags", "coats", "toys"]),
                    f"O{i}",
                ]
            )


def _run_child(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    started = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
        print(err, file=sys.stderr)
    return elapsed, usage.ru_maxrss / 1024, proc.returncode


def _fresh_database(name: str) -> str:
    import psycopg

    base = os.environ["DATABASE_URL"]
    admin_url = base.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + f"/{name}"


def run(ctx) -> list[Result]:
    from django.core.management import get_commands

    if "import_orders" not in get_commands():
        ctx.setdefault("notes", []).append("imports: import commands not available yet.")
        return []
    root: Path = ctx["root"]
    data = root / "bench" / "data"
    data.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    manage = str(root / "manage.py")
    results = []

    for label, n_customers, n_orders in (
        ("small", CUSTOMERS // 10, ORDERS // 10),
        ("full", CUSTOMERS, ORDERS),
    ):
        customers_csv = data / f"customers_{n_customers}.csv"
        orders_csv = data / f"orders_{n_orders}.csv"
        if not customers_csv.exists():
            print(f"  writing {customers_csv.name} ...", flush=True)
            _write_customers(customers_csv, n_customers)
        if not orders_csv.exists():
            print(f"  writing {orders_csv.name} ...", flush=True)
            _write_orders(orders_csv, n_orders, n_customers)
        env = dict(os.environ, DATABASE_URL=_fresh_database(f"crm_import_{label}"))
        subprocess.run([py, manage, "migrate", "--noinput", "-v0"], env=env, check=True)  # noqa: S603
        for kind, path, n in (
            ("customers", customers_csv, n_customers),
            ("orders", orders_csv, n_orders),
        ):
            elapsed, peak, code = _run_child([py, manage, f"import_{kind}", str(path)], env)
            rate = n / elapsed if code == 0 else None
            print(
                f"  {label} import_{kind}: {n:,} rows in {elapsed:,.1f} s,"
                f" peak {peak:,.0f} MB, exit {code}",
                flush=True,
            )
            results.append(
                Result(
                    f"import_{kind}, {n:,} rows: rate",
                    rate,
                    "rows/s",
                    50_000.0,
                    lower_is_better=False,
                    note="" if code == 0 else f"exit {code}",
                )
            )
            results.append(Result(f"import_{kind}, {n:,} rows: peak memory", peak, "MB", 500.0))
    return results
