"""Surveys at speed, on a fresh private database (the reference data stays untouched).

1. Sending a campaign to CAMPAIGN_CUSTOMERS customers: campaign_send() creates the invitations
   set-based and queues every email as Celery tasks on the real Redis broker. Target <= 60 s
   for 100,000 customers.
2. Answer submission served by gunicorn on loopback, CLIENTS concurrent clients (threads with
   http.client). Every client opens its personal link (GET /s/<token>/ -> session, redirect),
   GETs the form (CSRF cookie) and POSTs the finished answers. The POSTs are timed as their
   own phase: target >= 300 finished responses per second. Then some links are submitted a
   second time (must be refused with 409), and the database must hold exactly one response
   per link: zero lost, zero duplicated. The CPU the gunicorn workers and the PostgreSQL
   backends spend per finished POST is reported too: unlike the rate, it hardly depends on
   what else loads the machine.

Comparing with another checkout (the machine is shared, so compare side by side in one run):
BENCH_BASELINE_ROOT=/path/to/old/checkout serves the same flow from that tree as well, in
alternating rounds against the same database, and reports both rates and their ratio.

`make bench BENCH_ARGS="--only surveys"` runs it inside bench/run.py; standalone:
    scripts/with-services.sh .venv/bin/python bench/bench_surveys.py [--customers N] [--responses N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN_CUSTOMERS = 100_000
RESPONSES = 3_000
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "50"))
DUPLICATES = 200
# Sync workers, 2 x cores + 1 (gunicorn's advice): a finished POST is short and CPU-bound.
WORKERS = int(os.environ.get("BENCH_GUNICORN_WORKERS", str(2 * (os.cpu_count() or 1) + 1)))
BASELINE_ROOT = os.environ.get("BENCH_BASELINE_ROOT", "")
BENCH_DB = "crm_bench_surveys"

BENCH_SETTINGS = """
from config.settings import *  # noqa: F403

# 50 benchmark clients share one loopback address: a per-IP limit they never reach keeps the
# limiter's work (a counter in the local-memory cache, no database) in the measurement.
SURVEYS_RATE_LIMIT = 10**9
PLAIN_STATIC = "django.contrib.staticfiles.storage.StaticFilesStorage"
# No collectstatic in a throwaway run: plain static storage instead of the manifest.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": PLAIN_STATIC}}  # noqa: F405
# The refused double submits (409) would each log a warning line.
LOGGING["loggers"]["django.request"] = {"level": "ERROR"}  # noqa: F405
"""


# --- parent side --------------------------------------------------------------------------


def _fresh_database(name: str) -> str:
    import psycopg

    base = os.environ["DATABASE_URL"]
    admin_url = base.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + f"/{name}"


def _child_env(database_url: str) -> dict[str, str]:
    env = dict(os.environ, DATABASE_URL=database_url)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    env.setdefault("SECRET_KEY", "benchmark-only-secret-key")
    env.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    env["DEBUG"] = "0"
    env["SESSION_COOKIE_SECURE"] = "0"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def measure(customers: int, responses: int) -> dict:
    env = _child_env(_fresh_database(BENCH_DB))
    py = sys.executable
    subprocess.run(  # noqa: S603
        [py, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"], env=env, check=True
    )
    out = subprocess.run(  # noqa: S603
        [py, __file__, "--child", "--customers", str(customers), "--responses", str(responses)],
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    print(out, end="", flush=True)
    return json.loads(out.strip().splitlines()[-1])


def run(ctx) -> list:
    from bench.harness import Result

    figures = measure(CAMPAIGN_CUSTOMERS, RESPONSES)
    return _results(figures, Result)


def _results(f: dict, Result) -> list:
    n = f["campaign_customers"]
    scale = 100_000 / n if n else 1
    results = [
        Result(
            f"campaign_send to {n:,} customers: all emails queued",
            f["queue_seconds"],
            "s",
            60.0 / scale,
            note=f"{f['queued_emails']:,} emails in {f['queued_tasks']} tasks",
        ),
        Result(
            f"survey answers via gunicorn ({WORKERS} sync workers), {CLIENTS} clients:"
            " finished responses",
            f["post_rate"],
            "responses/s",
            300.0,
            lower_is_better=False,
            note=f"load average {f['load']:.1f} on {os.cpu_count()} cores during the POSTs",
        ),
        Result(
            "survey answers: CPU per finished POST (gunicorn workers + PostgreSQL backends)",
            f["cpu_ms_per_post"],
            "ms",
            None,
            note=f"workers {f['worker_cpu_ms']:.2f} ms + PostgreSQL {f['pg_cpu_ms']:.2f} ms;"
            f" the benchmark's own clients used {f['client_cpu_ms']:.2f} ms more",
        ),
        Result(
            f"survey answers: server capacity estimate, {os.cpu_count()} cores / CPU per POST",
            (os.cpu_count() or 1) * 1000 / f["cpu_ms_per_post"],
            "responses/s",
            None,
            lower_is_better=False,
            note="what an otherwise idle machine could serve; the measured rate above shares"
            " the cores with everything else running",
        ),
        Result(
            f"survey full flow (open link, form, answer), {CLIENTS} clients",
            f["flow_rate"],
            "responses/s",
            None,
            lower_is_better=False,
        ),
        Result("survey answers: lost responses (links finished, none stored)", f["lost"], "", 0.0),
        Result(
            "survey answers: duplicated responses (more than one per link)",
            f["duplicated"],
            "",
            0.0,
            note=f"double submits refused: {f['refused_duplicates']}/{f['duplicate_attempts']}",
        ),
    ]
    if "baseline_post_rate" in f:
        results.append(
            Result(
                "survey answers, baseline checkout in the same run: finished responses",
                f["baseline_post_rate"],
                "responses/s",
                None,
                lower_is_better=False,
                note=f"current/baseline = {f['post_rate'] / f['baseline_post_rate']:.2f}x;"
                f" CPU per POST {f['baseline_cpu_ms_per_post']:.2f} ms"
                f" ({f['baseline_cpu_ms_per_post'] / f['cpu_ms_per_post']:.2f}x current)",
            )
        )
    return results


# --- child side (fresh database, Django set up) -------------------------------------------


def _setup_django():
    import django

    sys.path.insert(0, str(ROOT))
    django.setup()


def _make_customers(n: int) -> None:
    from crm.models import Customer

    batch = 10_000
    for start in range(0, n, batch):
        Customer.objects.bulk_create(
            Customer(
                first_name=f"Bench{i}",
                last_name="Customer",
                email=f"bench{i}@example.com" if i % 50 else "",
                email_opt_out=i % 97 == 0,
                preferred_language="ko" if i % 3 == 0 else "en",
                city="Seoul",
            )
            for i in range(start, min(n, start + batch))
        )


def _survey():
    from surveys.models import Question, Survey

    survey = Survey.objects.create(title_en="Bench survey", title_ko="벤치 설문")
    for order, kind in enumerate(["nps", "csat", "ces", "text"], start=1):
        Question.objects.create(
            survey=survey, order=order, kind=kind, text_en=kind, required=kind != "text"
        )
    return survey


def _queue_campaign(survey, customers: int) -> dict:
    import redis
    from django.conf import settings

    from surveys import services

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete("celery")
    from crm.models import User

    manager = User.objects.create_user("bench-surveys", "bench@example.com")
    campaign = services.campaign_create(
        survey=survey, name="Bench", audience_kind="filter", audience_query="", created_by=manager
    )
    started = time.perf_counter()
    outcome = services.campaign_send(campaign=campaign)
    elapsed = time.perf_counter() - started
    tasks = client.llen("celery")
    queued_ids = 0
    for raw in client.lrange("celery", 0, -1):
        message = json.loads(raw)
        body = json.loads(__import__("base64").b64decode(message["body"]))
        queued_ids += len(body[1]["invitation_ids"])
    client.delete("celery")  # no worker here: do not leave 100k emails for a later run
    print(
        f"  campaign_send: {customers:,} customers, {outcome.queued:,} emails queued in"
        f" {tasks} tasks, {elapsed:.2f} s (skipped {outcome.skipped_opt_out} opted out,"
        f" {outcome.skipped_no_email} without email)",
        flush=True,
    )
    return {
        "campaign_customers": customers,
        "queue_seconds": elapsed,
        "queued_emails": queued_ids,
        "queued_tasks": tasks,
    }


def _invitations(survey, n: int, offset: int = 0) -> tuple[list[str], object]:
    import datetime as dt

    from django.utils import timezone

    from crm.models import Customer
    from surveys import tokens
    from surveys.models import Campaign, Invitation

    campaign = Campaign.objects.create(
        survey=survey,
        name="Bench answers",
        audience_kind="filter",
        expires_at=timezone.now() + dt.timedelta(days=30),
        queued_at=timezone.now(),
    )
    ids = list(Customer.objects.order_by("id").values_list("id", flat=True)[offset : offset + n])
    pairs = [tokens.token_pair() for _ in ids]
    Invitation.objects.bulk_create(
        Invitation(campaign=campaign, customer_id=cid, token_hash=h, sent_at=timezone.now())
        for cid, (_, h) in zip(ids, pairs, strict=True)
    )
    return [t for t, _ in pairs], campaign


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_gunicorn(port: int, settings_dir: str, root: Path = ROOT) -> subprocess.Popen:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="bench_surveys_settings")
    env["PYTHONPATH"] = settings_dir + os.pathsep + str(root)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc = subprocess.Popen(  # noqa: S603
        [
            gunicorn,
            "config.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(WORKERS),
            "--backlog",
            "2048",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=str(root),
    )
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("gunicorn did not start")


_CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_QID_RE = re.compile(r'name="q(\d+)"')


def _cookies(response, jar: dict) -> None:
    for header, value in response.getheaders():
        if header.lower() == "set-cookie":
            name, _, rest = value.partition("=")
            jar[name] = rest.split(";", 1)[0]


def _request(port, method, path, jar, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    _cookies(response, jar)
    conn.close()
    return response.status, data.decode()


def _prepare(port: int, token: str) -> tuple[dict, str]:
    """Open the link and the form, as a browser would; returns cookies and the POST body."""
    jar: dict[str, str] = {}
    status, _ = _request(port, "GET", f"/s/{token}/", jar)
    assert status == 302, status
    status, page = _request(port, "GET", "/s/answer/", jar)
    assert status == 200, status
    csrf = _CSRF_RE.search(page).group(1)
    qids = _QID_RE.findall(page)
    values = ["9", "4", "6", "Fast and friendly"]
    fields = [("csrfmiddlewaretoken", csrf), ("action", "submit")]
    fields += [(f"q{qid}", v) for qid, v in zip(dict.fromkeys(qids), values, strict=False)]
    return jar, urllib.parse.urlencode(fields)


def _parallel(items, work) -> tuple[float, list]:
    jobs: queue.Queue = queue.Queue()
    for item in items:
        jobs.put(item)
    results: list = []
    lock = threading.Lock()

    def client():
        while True:
            try:
                item = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                out = work(item)
            except Exception as exc:  # noqa: BLE001 - counted, not fatal
                out = exc
            with lock:
                results.append(out)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, results


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: str) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state) on


def _cpu_ticks(gunicorn_pid: int) -> dict[str, dict[str, int]]:
    """CPU ticks (user + system) per process of the gunicorn workers and of this benchmark's
    PostgreSQL backends (their command line names the database), from /proc."""
    ticks: dict[str, dict[str, int]] = {"workers": {}, "pg": {}}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        stat = _proc_stat(pid)
        if stat is None:
            continue
        used = int(stat[11]) + int(stat[12])  # utime, stime
        if stat[1] == str(gunicorn_pid):
            ticks["workers"][pid] = used
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"postgres: ") and BENCH_DB.encode() in cmdline:
            ticks["pg"][pid] = used
    return ticks


def _cpu_used(before: dict, after: dict, kind: str) -> float:
    """Seconds used between two samples by processes alive at the second one (a backend that
    Django replaced meanwhile, CONN_MAX_AGE, is missed: a slight undercount, never negative)."""
    return sum(t - before[kind].get(pid, 0) for pid, t in after[kind].items()) / _CLK_TCK


def _answers_round(survey, responses: int, offset: int, root: Path, settings_dir: str) -> dict:
    """One POST phase served from `root`: fresh links, DUPLICATES of them posted twice."""
    from surveys.models import Response

    tokens, campaign = _invitations(survey, responses, offset)
    port = _free_port()
    server = _start_gunicorn(port, settings_dir, root)
    try:
        for _ in range(2 * WORKERS):  # warm every worker (imports, connections, templates)
            _request(port, "GET", f"/s/{'x' * 43}/", {})
        # DUPLICATES links are opened in two sessions and both forms are posted in the
        # same phase, as a double click or two devices would: one must win, one get 409.
        links = tokens + tokens[:DUPLICATES]
        random.Random(1).shuffle(links)
        prep_s, prepared = _parallel(links, lambda t: _prepare(port, t))
        ok_prepared = [p for p in prepared if isinstance(p, tuple)]
        cpu_before = _cpu_ticks(server.pid)
        client_before = time.process_time()
        post_s, statuses = _parallel(
            ok_prepared, lambda p: _request(port, "POST", "/s/answer/", p[0], p[1])[0]
        )
        client_cpu = time.process_time() - client_before
        cpu_after = _cpu_ticks(server.pid)
        load = os.getloadavg()[0]
    finally:
        server.terminate()
        server.wait(timeout=30)
    finished = sum(1 for s in statuses if s == 200)
    refused = sum(1 for s in statuses if s == 409)
    stored = Response.objects.filter(campaign=campaign).count()
    distinct = Response.objects.filter(campaign=campaign).values("invitation").distinct().count()
    return {
        "links": len(tokens),
        "posts": len(statuses),
        "prep_s": prep_s,
        "post_s": post_s,
        "finished": finished,
        "refused": refused,
        "other": sorted(str(s) for s in statuses if s not in (200, 409))[:5],
        "stored": stored,
        "distinct": distinct,
        "worker_cpu": _cpu_used(cpu_before, cpu_after, "workers"),
        "pg_cpu": _cpu_used(cpu_before, cpu_after, "pg"),
        "client_cpu": client_cpu,
        "load": load,
    }


def _answers(survey, responses: int) -> dict:
    variants = [("current", ROOT)]
    if BASELINE_ROOT:
        variants.append(("baseline", Path(BASELINE_ROOT).resolve()))
    # With a baseline, alternate A B B A so that a change in the machine's load hits both.
    order = variants if len(variants) == 1 else [*variants, *reversed(variants)]
    per_round = max(1, responses // (len(order) // len(variants)))
    totals: dict[str, dict] = {}
    offset = 0
    with tempfile.TemporaryDirectory() as settings_dir:
        Path(settings_dir, "bench_surveys_settings.py").write_text(BENCH_SETTINGS)
        for name, root in order:
            r = _answers_round(survey, per_round, offset, root, settings_dir)
            offset += per_round
            print(
                f"  answers [{name}]: {r['links']:,} links (+{DUPLICATES} double submits),"
                f" prepare {r['prep_s']:.1f} s, POST phase {r['post_s']:.2f} s"
                f" ({r['finished'] / r['post_s']:,.0f} finished/s; {r['finished']} finished,"
                f" {r['refused']} refused as already answered, other: {r['other']});"
                f" stored {r['stored']}, distinct {r['distinct']}; CPU per POST: workers"
                f" {1000 * r['worker_cpu'] / r['posts']:.2f} ms, PostgreSQL"
                f" {1000 * r['pg_cpu'] / r['posts']:.2f} ms; load {r['load']:.1f}",
                flush=True,
            )
            t = totals.setdefault(name, {})
            for key, value in r.items():
                if isinstance(value, int | float):
                    t[key] = t.get(key, 0) + value
            t["rounds"] = t.get("rounds", 0) + 1
    cur = totals["current"]
    figures = {
        "post_rate": cur["finished"] / cur["post_s"],
        "flow_rate": cur["finished"] / (cur["prep_s"] + cur["post_s"]),
        "worker_cpu_ms": 1000 * cur["worker_cpu"] / cur["posts"],
        "pg_cpu_ms": 1000 * cur["pg_cpu"] / cur["posts"],
        "client_cpu_ms": 1000 * cur["client_cpu"] / cur["posts"],
        "lost": cur["links"] - cur["distinct"],
        "duplicated": cur["stored"] - cur["distinct"],
        "refused_duplicates": cur["refused"],
        "duplicate_attempts": DUPLICATES * cur["rounds"],
        "load": cur["load"] / cur["rounds"],
    }
    figures["cpu_ms_per_post"] = figures["worker_cpu_ms"] + figures["pg_cpu_ms"]
    if "baseline" in totals:
        base = totals["baseline"]
        figures["baseline_post_rate"] = base["finished"] / base["post_s"]
        figures["baseline_cpu_ms_per_post"] = (
            1000 * (base["worker_cpu"] + base["pg_cpu"]) / base["posts"]
        )
        figures["baseline_lost"] = base["links"] - base["distinct"]
        figures["baseline_duplicated"] = base["stored"] - base["distinct"]
    return figures


def child(customers: int, responses: int) -> None:
    _setup_django()
    started = time.perf_counter()
    _make_customers(customers)
    print(f"  {customers:,} customers created in {time.perf_counter() - started:.1f} s", flush=True)
    survey = _survey()
    figures = _queue_campaign(survey, customers)
    figures.update(_answers(survey, min(responses, customers)))
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--customers", type=int, default=CAMPAIGN_CUSTOMERS)
    parser.add_argument("--responses", type=int, default=RESPONSES)
    args = parser.parse_args()
    if args.child:
        child(args.customers, args.responses)
        return
    sys.path.insert(0, str(ROOT))
    from bench.harness import Result, format_table

    figures = measure(args.customers, args.responses)
    print(format_table(_results(figures, Result)))


if __name__ == "__main__":
    main()
