"""Surveys at speed, on a fresh private database (the reference data stays untouched).

1. Sending a campaign to CAMPAIGN_CUSTOMERS customers: campaign_send() creates the invitations
   set-based and queues every email as Celery tasks on the real Redis broker. Target <= 60 s
   for 100,000 customers.
2. Answer submission served by gunicorn on loopback, CLIENTS concurrent clients (threads with
   http.client). Every client opens its personal link (GET /s/<token>/ -> session, redirect),
   GETs the form (CSRF cookie) and POSTs the finished answers. The POSTs are timed as their
   own phase: target >= 300 finished responses per second. Then some links are submitted a
   second time (must be refused with 409), and the database must hold exactly one response
   per link: zero lost, zero duplicated.

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
WORKERS = int(os.environ.get("BENCH_GUNICORN_WORKERS", "4"))

BENCH_SETTINGS = """
from config.settings import *  # noqa: F403

# 50 benchmark clients share one loopback address: the per-IP limit would stop them.
SURVEYS_RATE_LIMIT = 0
PLAIN_STATIC = "django.contrib.staticfiles.storage.StaticFilesStorage"
# No collectstatic in a throwaway run: plain static storage instead of the manifest.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": PLAIN_STATIC}}  # noqa: F405
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
    env = _child_env(_fresh_database("crm_bench_surveys"))
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
    return [
        Result(
            f"campaign_send to {n:,} customers: all emails queued",
            f["queue_seconds"],
            "s",
            60.0 / scale,
            note=f"{f['queued_emails']:,} emails in {f['queued_tasks']} tasks",
        ),
        Result(
            f"survey answers via gunicorn, {CLIENTS} clients: finished POSTs",
            f["post_rate"],
            "responses/s",
            300.0,
            lower_is_better=False,
        ),
        Result(
            f"survey full flow (open link, form, answer), {CLIENTS} clients",
            f["flow_rate"],
            "responses/s",
            None,
            lower_is_better=False,
        ),
        Result(
            "survey answers: lost + duplicated responses in the database",
            f["lost"] + f["duplicated"],
            "",
            0.0,
            note=f"double submits refused: {f['refused_duplicates']}/{f['duplicate_attempts']}",
        ),
    ]


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


def _invitations(survey, n: int) -> tuple[list[str], object]:
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
    ids = list(Customer.objects.order_by("id").values_list("id", flat=True)[:n])
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


def _start_gunicorn(port: int, settings_dir: str) -> subprocess.Popen:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="bench_surveys_settings")
    env["PYTHONPATH"] = settings_dir + os.pathsep + str(ROOT)
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
        cwd=str(ROOT),
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


def _answers(survey, responses: int) -> dict:
    from surveys.models import Response

    tokens, campaign = _invitations(survey, responses)
    port = _free_port()
    with tempfile.TemporaryDirectory() as settings_dir:
        Path(settings_dir, "bench_surveys_settings.py").write_text(BENCH_SETTINGS)
        server = _start_gunicorn(port, settings_dir)
        try:
            _request(port, "GET", "/login/", {})  # warm the workers
            # DUPLICATES links are opened in two sessions and both forms are posted in the
            # same phase, as a double click or two devices would: one must win, one get 409.
            links = tokens + tokens[:DUPLICATES]
            random.Random(1).shuffle(links)
            prep_s, prepared = _parallel(links, lambda t: _prepare(port, t))
            ok_prepared = [p for p in prepared if isinstance(p, tuple)]
            post_s, statuses = _parallel(
                ok_prepared, lambda p: _request(port, "POST", "/s/answer/", p[0], p[1])[0]
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
    finished = sum(1 for s in statuses if s == 200)
    refused = sum(1 for s in statuses if s == 409)
    stored = Response.objects.filter(campaign=campaign).count()
    distinct = Response.objects.filter(campaign=campaign).values("invitation").distinct().count()
    print(
        f"  answers: {len(tokens):,} links (+{DUPLICATES} double submits), prepare"
        f" {prep_s:.1f} s, POST phase {post_s:.2f} s ({finished / post_s:,.0f} finished/s;"
        f" {finished} finished, {refused} refused as already answered, other:"
        f" {sorted(str(s) for s in statuses if s not in (200, 409))[:5]});"
        f" stored {stored}, distinct {distinct}",
        flush=True,
    )
    return {
        "post_rate": finished / post_s,
        "flow_rate": finished / (prep_s + post_s),
        "lost": len(tokens) - stored,
        "duplicated": stored - distinct,
        "refused_duplicates": refused,
        "duplicate_attempts": DUPLICATES,
    }


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
