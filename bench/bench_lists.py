"""Staff list screens at reference scale, through the real URL stack (Django test client).

Target: p95 server time <= 150 ms for each list variant; the customer page of a customer with
1,000 interactions <= 100 ms. Each URL is warmed once, then requested REPEAT times.
"""

from __future__ import annotations

import time

from bench.harness import Result, median, percentile

REPEAT = 20


def _measure(client, url: str) -> tuple[list[float], int]:
    client.get(url)  # warm caches and the plan
    samples = []
    status = 0
    for _ in range(REPEAT):
        started = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        status = response.status_code
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)
    return samples, status


def run(ctx) -> list[Result]:
    from django.db import connection
    from django.db.models import Count
    from django.test import Client

    from crm.models import Customer, Interaction, User

    manager = (
        User.objects.filter(groups__name="Managers").first()
        or User.objects.filter(is_superuser=True).first()
    )
    if manager is None:
        manager = User.objects.create_superuser(
            "bench-manager", "bench@example.com", "bench-password-1"
        )
    client = Client()
    client.force_login(manager)

    owner = Customer.objects.exclude(owner=None).values_list("owner_id", flat=True).first()
    sample = Customer.objects.order_by("id")[1000]
    term = sample.last_name[:5] or sample.first_name[:5]
    bucket_id = None
    with connection.cursor() as cursor:
        try:
            cursor.execute("SELECT id FROM segments_bucket ORDER BY priority LIMIT 1")
            row = cursor.fetchone()
            bucket_id = row[0] if row else None
        except Exception:
            bucket_id = None

    variants = [
        ("unfiltered", "/customers/"),
        ("by owner", f"/customers/?owner={owner}"),
        ("by status + effort range", "/customers/?status=at_risk&effort_min=7&effort_max=10"),
        ("by decile", "/customers/?decile=1"),
        ("by text search", f"/customers/?q={term}"),
        ("sorted by a column", "/customers/?sort=-name"),
        ("by status, deep page", "/customers/?status=at_risk&page=200"),
        ("sorted by a column, deep page", "/customers/?sort=-service_effort&page=2000"),
        ("deep page", "/customers/?page=2000"),
        ("by text search, deep page", f"/customers/?q={term}&page=20"),
    ]
    # Parameter names are crm.filters.CustomerFilter's (bucket: a bucket id or "none").
    if bucket_id:
        variants.append(("by bucket", f"/customers/?bucket={bucket_id}"))
        variants.append(("by bucket: Unsegmented", "/customers/?bucket=none"))
    variants.append(("high-value accounts", "/accounts/high-value/"))
    variants.append(("high-value accounts, deep page", "/accounts/high-value/?page=200"))

    results = []
    for label, url in variants:
        samples, status = _measure(client, url)
        note = "" if status == 200 else f"HTTP {status}"
        name = label if url.startswith("/accounts/") else f"/customers/ {label}"
        results.append(Result(f"{name}: p95", percentile(samples, 95), "ms", 150.0, note=note))
        print(
            f"  {label:28s} p95 {percentile(samples, 95):8.1f} ms"
            f"  median {median(samples):8.1f} ms  [{status}]",
            flush=True,
        )

    # The customer page of a customer with about 1,000 interactions (the heaviest there is).
    busiest = (
        Interaction.objects.values("customer_id").annotate(n=Count("id")).order_by("-n").first()
    )
    if busiest:
        samples, status = _measure(client, f"/customers/{busiest['customer_id']}/")
        results.append(
            Result(
                f"customer page, {busiest['n']:,} interactions: p95",
                percentile(samples, 95),
                "ms",
                100.0,
                note="" if status == 200 else f"HTTP {status}",
            )
        )
    return results
