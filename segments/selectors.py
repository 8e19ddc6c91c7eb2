"""Reads for buckets: the rule-ready customer queryset, bucket lists, previews, membership."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Count,
    ExpressionWrapper,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext

from crm.models import Customer, SocialProfile

from . import rules as rules_mod
from .models import Bucket, BucketMembership, BucketVersion, CurrentMembership

MAX_ACTIVE_BUCKETS = 20
REASON_MAX = 500

# Registry fields that are plain Customer columns of the same name need no annotation.
_MODEL_FIELDS = {
    "influence",
    "status",
    "city",
    "region",
    "country",
    "gender",
    "web_savviness",
    "acquisition_channel",
}


def _followers():
    totals = (
        SocialProfile.objects.filter(customer=OuterRef("pk"))
        .order_by()
        .values("customer")
        .annotate(total=Sum("followers"))
        .values("total")
    )
    return Coalesce(Subquery(totals, output_field=IntegerField()), Value(0))


def _rule_annotations(as_of: date) -> dict:
    return {
        "effort": F("service_effort"),
        "buyer_type": F("metrics__buyer_type"),
        "aov": F("metrics__aov"),
        "order_count": F("metrics__order_count"),
        "orders_window": F("metrics__orders_window"),
        "days_since_last_order": F("metrics__days_since_last_order"),
        "preferred_channel": F("metrics__preferred_channel"),
        "favourite_category": F("metrics__favourite_category"),
        "value_decile": F("metrics__value_decile"),
        "age": ExpressionWrapper(Value(as_of.year) - F("birth_year"), output_field=IntegerField()),
        "cohort": Func(
            F("metrics__first_order_at"),
            Value("YYYY-MM"),
            function="to_char",
            output_field=CharField(),
        ),
        "revenue_lifetime": F("metrics__revenue_lifetime"),
        "margin_window": F("metrics__margin_window"),
        "contribution_window": F("metrics__contribution_window"),
        "contribution_lifetime": F("metrics__contribution_lifetime"),
        "cost_to_serve_window": F("metrics__cost_to_serve_window"),
        "minutes_window": F("metrics__minutes_window"),
        "followers": _followers(),
        "has_owner": ExpressionWrapper(Q(owner__isnull=False), output_field=BooleanField()),
        **{name: factory(as_of) for name, factory in _EXTRA_ANNOTATIONS.items()},
    }


# Fields added by apps above segments (e.g. surveys' latest_nps_category), see below.
_EXTRA_ANNOTATIONS: dict = {}

assert set(rules_mod.FIELDS) == _MODEL_FIELDS | set(_rule_annotations(date(2000, 1, 1)))


def rule_field_register(*, spec: rules_mod.FieldSpec, annotation) -> None:
    """Let an app above segments add a rule field without segments importing it: call from
    its AppConfig.ready(). `annotation(as_of)` returns the Customer expression, e.g. a
    Subquery of the latest NPS category. Registering the same name again replaces it."""
    if spec.kind not in rules_mod.OPERATORS_BY_KIND:
        raise ValueError(f"unknown field kind {spec.kind!r}")
    if spec.name in _MODEL_FIELDS or hasattr(Customer, spec.name):
        raise ValueError(f"{spec.name!r} clashes with a customer field")
    rules_mod.FIELDS[spec.name] = spec
    _EXTRA_ANNOTATIONS[spec.name] = annotation


def customers_for_rules(*, as_of: date | None = None) -> QuerySet[Customer]:
    """Customers annotated with every registry field (rules.FIELDS), so that a compiled rule
    Q filters in SQL. Only annotations a query uses are computed (values()/count() drop the
    rest). `as_of` fixes the year for age; today by default."""
    as_of = as_of or timezone.localdate()
    return Customer.objects.annotate(**_rule_annotations(as_of))


def active_buckets() -> QuerySet[Bucket]:
    return Bucket.objects.filter(active=True).order_by("priority", "id")


def bucket_list() -> QuerySet[Bucket]:
    """All buckets by priority with member_count (current members)."""
    counts = (
        CurrentMembership.objects.filter(bucket=OuterRef("pk"))
        .order_by()
        .values("bucket")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Bucket.objects.annotate(
        member_count=Coalesce(Subquery(counts, output_field=IntegerField()), Value(0))
    ).order_by("priority", "id")


def unsegmented_count() -> int:
    return CurrentMembership.objects.filter(bucket__isnull=True).count()


def too_many_active_buckets() -> bool:
    return active_buckets().count() > MAX_ACTIVE_BUCKETS


def _safe_compile(rules) -> Q | None:
    try:
        return rules_mod.compile_rules(rules)
    except ValidationError:
        return None


def _reason_text(bucket: Bucket, words: str) -> str:
    text = gettext("%(bucket)s (rules v%(version)s): %(words)s") % {
        "bucket": bucket.name,
        "version": bucket.version,
        "words": words,
    }
    return text[: REASON_MAX - 1] + "…" if len(text) > REASON_MAX else text


@dataclass
class Assignment:
    """Each customer's first matching rule branch, as (pk, branch) rows of `queryset`.

    `branch` is a 1-based index into `bucket_ids` and `reasons` (branch 1 = Unsegmented,
    bucket None). Keeping the long reason texts out of the per-customer rows keeps the
    nightly write narrow.
    """

    queryset: QuerySet
    bucket_ids: list
    reasons: list[str]
    used: list[Bucket]
    skipped: list[Bucket]


def bucket_assignment(
    *, as_of: date, customer_ids=None, buckets: list[Bucket] | None = None
) -> Assignment:
    """One query giving each customer's bucket by priority.

    A single CASE expression walks the active buckets in priority order, and within a bucket
    whose top group is OR each top-level branch, so the first match wins (and names the
    branch that matched); no match means Unsegmented. Buckets whose stored rules no longer
    validate are skipped.
    """
    buckets = list(active_buckets()) if buckets is None else buckets
    whens, used, skipped = [], [], []
    bucket_ids: list = [None]
    reasons = [gettext("No active bucket matched")]
    for bucket in buckets:
        try:
            clean = rules_mod.validate(bucket.rules)
        except ValidationError:
            skipped.append(bucket)
            continue
        used.append(bucket)
        for path, item in rules_mod.top_level_branches(clean):
            words = rules_mod.item_words(item)
            if path:
                words = gettext("condition %(path)s, %(words)s") % {"path": path, "words": words}
            bucket_ids.append(bucket.pk)
            reasons.append(_reason_text(bucket, words))
            whens.append(When(rules_mod.compile_item(item), then=Value(len(reasons))))
    qs = customers_for_rules(as_of=as_of)
    if customer_ids is not None:
        qs = qs.filter(pk__in=list(customer_ids))
    branch = (
        Case(*whens, default=Value(1), output_field=IntegerField())
        if whens
        else Value(1, output_field=IntegerField())
    )
    qs = qs.annotate(branch=branch).values("pk", "branch").order_by()
    return Assignment(
        queryset=qs, bucket_ids=bucket_ids, reasons=reasons, used=used, skipped=skipped
    )


@dataclass
class Preview:
    matched: int
    exclusive: int
    contribution: Decimal
    margin: Decimal
    cost_to_serve: Decimal
    roi: Decimal | None
    sample: list


def bucket_preview(
    *, rules, priority: int | None, bucket_id: int | None = None, as_of: date | None = None
) -> Preview:
    """What a bucket with these rules and priority would hold now. `matched` counts customers
    matching on their own; `exclusive` those left after active buckets of a lower priority
    number take theirs. Money is over the exclusive set. Raises ValidationError on bad rules."""
    q = rules_mod.compile_rules(rules)
    higher = active_buckets().exclude(pk=bucket_id)
    if priority is not None:
        higher = higher.filter(priority__lt=priority)
    higher_q = None
    for bucket in higher:
        hq = _safe_compile(bucket.rules)
        if hq is not None:
            higher_q = hq if higher_q is None else higher_q | hq
    qs = customers_for_rules(as_of=as_of).filter(q)
    taken = (
        Case(When(higher_q, then=Value(True)), default=Value(False), output_field=BooleanField())
        if higher_q is not None
        else Value(False, output_field=BooleanField())
    )
    qs = qs.annotate(taken=taken)
    mine = Q(taken=False)
    totals = qs.aggregate(
        matched=Count("pk"),
        exclusive=Count("pk", filter=mine),
        contribution=Sum("metrics__contribution_window", filter=mine),
        margin=Sum("metrics__margin_window", filter=mine),
        cost=Sum("metrics__cost_to_serve_window", filter=mine),
    )
    sample = list(qs.filter(taken=False).select_related("metrics").order_by("pk")[:10])
    margin = totals["margin"] or Decimal("0")
    cost = totals["cost"] or Decimal("0")
    return Preview(
        matched=totals["matched"],
        exclusive=totals["exclusive"],
        contribution=totals["contribution"] or Decimal("0"),
        margin=margin,
        cost_to_serve=cost,
        roi=((margin - cost) / cost).quantize(Decimal("0.01")) if cost else None,
        sample=sample,
    )


def bucket_members(*, bucket: Bucket) -> QuerySet[Customer]:
    return (
        Customer.objects.filter(current_membership__bucket=bucket)
        .select_related("metrics", "current_membership", "owner")
        .order_by("pk")
    )


def bucket_for_customer(customer: Customer) -> tuple[Bucket | None, str]:
    """The customer's current bucket (None = Unsegmented or not yet evaluated) and why."""
    row = CurrentMembership.objects.select_related("bucket").filter(customer_id=customer.pk).first()
    if row is None:
        return None, gettext("Not evaluated yet")
    return row.bucket, row.reason


def membership_history(customer: Customer) -> QuerySet[BucketMembership]:
    """Every bucket the customer has been in, newest first."""
    return (
        BucketMembership.objects.filter(customer_id=customer.pk)
        .select_related("bucket")
        .order_by("-entered_on", "-id")
    )


@dataclass
class VersionChange:
    version: BucketVersion
    changes: list[str]
    rule_diff: list[str]


def bucket_history(*, bucket: Bucket) -> list[VersionChange]:
    """Saved versions newest first, each with what changed against the one before."""
    versions = list(bucket.versions.select_related("saved_by").order_by("version"))
    out: list[VersionChange] = []
    previous = None
    for current in versions:
        changes: list[str] = []
        rule_diff: list[str] = []
        if previous is None:
            changes.append(gettext("Created"))
            rule_diff = ["  " + line for line in rules_mod.describe_lines(current.rules)]
        else:
            for attr, label in (
                ("name", gettext("Name")),
                ("priority", gettext("Priority")),
                ("colour", gettext("Colour")),
                ("active", gettext("Active")),
            ):
                before, after = getattr(previous, attr), getattr(current, attr)
                if before != after:
                    changes.append(f"{label}: {before} → {after}")
            if previous.persona != current.persona:
                changes.append(gettext("Persona changed"))
            if previous.rules != current.rules:
                rule_diff = [
                    line
                    for line in difflib.ndiff(
                        rules_mod.describe_lines(previous.rules),
                        rules_mod.describe_lines(current.rules),
                    )
                    if line[:1] in "+-"
                ]
        out.append(VersionChange(version=current, changes=changes, rule_diff=rule_diff))
        previous = current
    return list(reversed(out))


# --- ROI (engineer C2): snapshots, trend, whale curve, negative customers, cohorts, queue ---

from collections import defaultdict  # noqa: E402

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import DecimalField  # noqa: E402
from django.utils.translation import gettext_lazy  # noqa: E402

from crm.models import CustomerMetrics, FollowUp, Interaction, Order, User  # noqa: E402

from .models import JobRun, RoiSnapshot  # noqa: E402

ROI_TREND_SNAPSHOTS = 90
WHALE_POINTS = 100
COHORT_MONTHS = 24


def latest_job_run() -> JobRun | None:
    return JobRun.objects.order_by("-started_at", "-id").first()


def job_running() -> bool:
    return JobRun.objects.filter(status=JobRun.Status.RUNNING).exists()


def latest_snapshot_date() -> date | None:
    return RoiSnapshot.objects.order_by("-date").values_list("date", flat=True).first()


def roi_snapshots(*, on: date) -> QuerySet[RoiSnapshot]:
    """The snapshot rows of one date, buckets by priority, Unsegmented last."""
    return (
        RoiSnapshot.objects.filter(date=on)
        .select_related("bucket")
        .order_by(F("bucket__priority").asc(nulls_last=True), "bucket_id")
    )


def roi_totals(rows) -> dict:
    """Whole-business totals of already fetched snapshot rows (no query)."""
    margin = sum((r.margin for r in rows), Decimal(0))
    cost = sum((r.cost_to_serve for r in rows), Decimal(0))
    return {
        "customers": sum(r.customers for r in rows),
        "revenue": sum((r.revenue for r in rows), Decimal(0)),
        "margin": margin,
        "cost_to_serve": cost,
        "contribution": margin - cost,
        "roi": ((margin - cost) / cost).quantize(Decimal("0.0001")) if cost else None,
    }


def roi_trend(*, limit: int = ROI_TREND_SNAPSHOTS) -> dict:
    """ROI per bucket over the last `limit` snapshot dates, for a line chart: {"labels": [iso
    dates], "datasets": [{"label", "colour", "data": [roi or None]}]}. Two queries."""
    dates = list(
        RoiSnapshot.objects.order_by("-date").values_list("date", flat=True).distinct()[:limit]
    )
    dates.reverse()
    if not dates:
        return {"labels": [], "datasets": []}
    index = {d: n for n, d in enumerate(dates)}
    series: dict = {}
    rows = (
        RoiSnapshot.objects.filter(date__gte=dates[0])
        .select_related("bucket")
        .order_by(F("bucket__priority").asc(nulls_last=True), "date")
    )
    for row in rows:
        key = row.bucket_id
        if key not in series:
            series[key] = {
                "label": row.bucket.name if row.bucket else gettext("Unsegmented"),
                "colour": row.bucket.colour if row.bucket else "#9aa5b1",
                "data": [None] * len(dates),
            }
        series[key]["data"][index[row.date]] = float(row.roi) if row.roi is not None else None
    return {"labels": [d.isoformat() for d in dates], "datasets": list(series.values())}


def whale_curve(*, points: int = WHALE_POINTS) -> list[dict]:
    """Cumulative window contribution by customer rank (most valuable first), sampled in SQL to
    about `points` points: [{"share": % of customers, "cumulative": money}]."""
    table = CustomerMetrics._meta.db_table
    sql = f"""
SELECT rn, n, cum FROM (
    SELECT ROW_NUMBER() OVER (ORDER BY contribution_window DESC, customer_id) AS rn,
        COUNT(*) OVER () AS n,
        SUM(contribution_window) OVER (
            ORDER BY contribution_window DESC, customer_id ROWS UNBOUNDED PRECEDING) AS cum
    FROM {table}
) ranked
WHERE rn = n OR rn - (rn / step) * step = 0
ORDER BY rn
"""  # noqa: S608
    step = f"(CASE WHEN n < {int(points)} THEN 1 ELSE n / {int(points)} END)"
    with connection.cursor() as cur:
        cur.execute(sql.replace("step", step))
        rows = cur.fetchall()
    curve = [{"share": 0.0, "cumulative": 0.0}]
    curve += [{"share": round(100 * rn / n, 2), "cumulative": float(cum)} for rn, n, cum in rows]
    return curve


def negative_contribution_customers() -> QuerySet[Customer]:
    """Customers whose cost to serve exceeds their margin in the window, worst first."""
    return (
        Customer.objects.filter(metrics__cost_to_serve_window__gt=F("metrics__margin_window"))
        .select_related("metrics", "owner", "current_membership__bucket")
        .order_by("metrics__contribution_window", "pk")
    )


def _month_index(expr: str, *, timestamp: bool) -> str:
    """SQL: year * 12 + month of a timestamp (local time) or date expression."""
    if connection.vendor == "postgresql":
        local = f"({expr} AT TIME ZONE %(tz)s)" if timestamp else expr
        # date_part (double precision), not EXTRACT (numeric since PostgreSQL 14): the cohort
        # triangle evaluates this for every order and interaction, numeric is ~3x slower.
        return f"(date_part('year', {local}) * 12 + date_part('month', {local}) - 1)::int"
    return (
        f"(CAST(strftime('%%Y', {expr}) AS INTEGER) * 12 "
        f"+ CAST(strftime('%%m', {expr}) AS INTEGER) - 1)"
    )


def _month_start(index: int) -> datetime:
    """Local midnight opening month `index` (year * 12 + month - 1), time-zone aware."""
    tz = timezone.get_default_timezone()
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=tz)


def cohort_triangle(*, months: int = COHORT_MONTHS, today: date | None = None) -> dict:
    """Acquisition-month cohorts (acquisition date, else first order) of the last `months`
    months: customers, average CAC, cumulative contribution per customer by months since
    acquisition (margin - cost to serve), and the first month it reaches the average CAC.

    Aggregated in SQL to one row per (cohort, month offset); Python only reshapes those
    few hundred cells. JSON-ready (the nightly job stores it in JobRun.reports): {"offsets":
    [0..], "rows": [{"cohort": "YYYY-MM", "customers", "cac": "0.00" or None, "cells":
    ["0.00" or None], "recovered": month offset or None}]}.
    """
    today = today or timezone.localdate()
    now_idx = today.year * 12 + today.month - 1
    first_idx = now_idx - months + 1
    customer, metrics = Customer._meta.db_table, CustomerMetrics._meta.db_table
    order, interaction, user = Order._meta.db_table, Interaction._meta.db_table, User._meta.db_table
    cohort_expr = (
        f"COALESCE({_month_index('c.acquisition_date', timestamp=False)}, "
        f"{_month_index('m.first_order_at', timestamp=True)})"
    )
    if connection.vendor == "postgresql":
        # Only events inside the shown months can land in a cell (0 <= k, cohort + k <= now):
        # bound the scans by time so that older orders and interactions are never joined.
        def bounded(ts: str) -> str:
            return f"{ts} >= %(since_ts)s AND {ts} < %(until_ts)s"
    else:  # SQLite reads month indexes from stored (UTC) text; keep the exact filter below

        def bounded(ts: str) -> str:
            return "1 = 1"

    sql = f"""
WITH cust AS (
    SELECT c.id, {cohort_expr} AS cohort, c.acquisition_cost
    FROM {customer} c LEFT JOIN {metrics} m ON m.customer_id = c.id
), members AS (
    SELECT id, cohort, acquisition_cost FROM cust
    WHERE cohort >= %(first)s AND cohort <= %(now)s
), sizes AS (
    SELECT cohort, COUNT(*) AS customers, AVG(acquisition_cost) AS cac
    FROM members GROUP BY cohort
), events AS (
    SELECT mb.cohort, {_month_index("o.placed_at", timestamp=True)} - mb.cohort AS k,
        o.margin AS amount
    FROM members mb JOIN {order} o ON o.customer_id = mb.id
    WHERE {bounded("o.placed_at")}
    UNION ALL
    SELECT mb.cohort, {_month_index("i.occurred_at", timestamp=True)} - mb.cohort AS k,
        -(i.minutes * COALESCE(u.hourly_cost, %(rate)s) / 60.0) AS amount
    FROM members mb JOIN {interaction} i ON i.customer_id = mb.id
    JOIN {user} u ON u.id = i.staff_id
    WHERE {bounded("i.occurred_at")}
), cells AS (
    SELECT cohort, k, SUM(amount) AS amount FROM events
    WHERE k >= 0 AND cohort + k <= %(now)s GROUP BY cohort, k
)
SELECT s.cohort, s.customers, s.cac, c.k, c.amount
FROM sizes s LEFT JOIN cells c ON c.cohort = s.cohort
ORDER BY s.cohort, c.k
"""  # noqa: S608
    params = {
        "first": first_idx,
        "now": now_idx,
        "since_ts": _month_start(first_idx),
        "until_ts": _month_start(now_idx + 1),
        "tz": settings.TIME_ZONE,
        "rate": settings.CRM_STAFF_COST_PER_HOUR,
    }
    with connection.cursor() as cur:
        cur.execute(sql, params)
        fetched = cur.fetchall()
    meta: dict = {}
    amounts: dict = defaultdict(dict)
    for cohort, size, cac, k, amount in fetched:
        cac = Decimal(cac).quantize(Decimal("0.01")) if cac is not None else None
        meta[cohort] = (size, cac)
        if k is not None:
            amounts[cohort][int(k)] = Decimal(amount)
    offsets = list(range(months))
    rows = []
    for cohort in sorted(meta, reverse=True):
        size, cac = meta[cohort]
        age = now_idx - cohort  # months elapsed: later cells are in the future
        running, cells, recovered = Decimal(0), [], None
        for k in offsets:
            if k > age:
                cells.append(None)
                continue
            running += amounts[cohort].get(k, Decimal(0))
            per_customer = (running / size).quantize(Decimal("0.01"))
            cells.append(str(per_customer))
            if recovered is None and cac is not None and cac > 0 and per_customer >= cac:
                recovered = k
        rows.append(
            {
                "cohort": f"{cohort // 12:04d}-{cohort % 12 + 1:02d}",
                "customers": size,
                "cac": None if cac is None else str(cac),
                "cells": cells,
                "recovered": recovered,
            }
        )
    return {"offsets": offsets, "rows": rows}


def latest_reports() -> dict:
    """The precomputed screen data (whale curve, cohorts) of the last successful ROI run."""
    reports = (
        JobRun.objects.filter(status=JobRun.Status.SUCCEEDED)
        .order_by("-started_at", "-id")
        .values_list("reports", flat=True)
        .first()
    )
    return reports or {}


def roi_history(bucket: Bucket, *, limit: int = ROI_TREND_SNAPSHOTS) -> list[RoiSnapshot]:
    """The bucket's last `limit` snapshots, oldest first (for a table and a line chart)."""
    rows = list(RoiSnapshot.objects.filter(bucket=bucket).order_by("-date")[:limit])
    rows.reverse()
    return rows


FOLLOW_UP_QUEUE_ORDER = gettext_lazy(
    "Ordered so that staff serve first where it pays back most: the ROI of the customer's "
    "bucket (latest snapshot, highest first), then value decile (1 = top 10 %), then influence "
    "(highest first), then the oldest follow-up."
)


def follow_up_queue(user, *, include_unassigned: bool = False) -> QuerySet[FollowUp]:
    """Open follow-ups of `user` (and the unassigned queue if asked), ordered by the ROI of the
    customer's bucket in the latest snapshot (desc), value decile (asc), influence (desc), then
    age (oldest first). Each row is annotated with bucket_roi, bucket_name, value_decile and
    customer_influence for showing the reason (see follow_up_reason). Two queries to build
    (the latest snapshot's ROI per bucket), then one for the list."""
    scope = Q(assigned_to=user)
    if include_unassigned:
        scope |= Q(assigned_to__isnull=True)
    latest = latest_snapshot_date()
    roi_by_bucket = {}
    if latest:
        roi_by_bucket = dict(
            RoiSnapshot.objects.filter(date=latest).values_list("bucket_id", "roi")
        )
    money = DecimalField(max_digits=14, decimal_places=4)
    whens = [
        When(customer__current_membership__bucket_id=bucket_id, then=Value(roi))
        for bucket_id, roi in roi_by_bucket.items()
        if bucket_id is not None and roi is not None
    ]
    unsegmented = roi_by_bucket.get(None)
    if unsegmented is not None:
        whens.append(
            When(customer__current_membership__bucket_id__isnull=True, then=Value(unsegmented))
        )
    bucket_roi = (
        Case(*whens, default=Value(None), output_field=money)
        if whens
        else Value(None, output_field=money)
    )
    return (
        FollowUp.objects.open()
        .filter(scope)
        .select_related("customer", "assigned_to", "customer__current_membership__bucket")
        .annotate(
            bucket_roi=bucket_roi,
            value_decile=F("customer__metrics__value_decile"),
            customer_influence=F("customer__influence"),
            bucket_name=F("customer__current_membership__bucket__name"),
        )
        .order_by(
            F("bucket_roi").desc(nulls_last=True),
            F("value_decile").asc(nulls_last=True),
            F("customer_influence").desc(),
            "created_at",
            "id",
        )
    )


def follow_up_reason(follow_up: FollowUp) -> str:
    """Why a follow-up sits where it does in follow_up_queue (uses its annotations)."""
    bucket = follow_up.bucket_name or gettext("Unsegmented")
    roi = follow_up.bucket_roi
    roi_text = f"{roi:.2f}" if roi is not None else "–"
    decile = follow_up.value_decile if follow_up.value_decile is not None else "–"
    return gettext(
        "Bucket %(bucket)s (ROI %(roi)s), value decile %(decile)s, influence %(influence)s, "
        "open since %(since)s"
    ) % {
        "bucket": bucket,
        "roi": roi_text,
        "decile": decile,
        "influence": follow_up.customer_influence,
        "since": follow_up.created_at.date().isoformat(),
    }
