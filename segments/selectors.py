"""Reads for buckets: the rule-ready customer queryset, bucket lists, previews, membership."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.conf import settings
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
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext

from crm.metrics import key_lookups
from crm.models import CohortContribution, Customer, CustomerMetrics, SocialProfile

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


def _followers(*, everyone: bool = False):
    """Followers over all of a customer's social profiles. With `everyone` (every customer
    evaluated), from crm.SocialTotal joined in customer order; else a subquery per customer,
    which for a few customers reads only theirs (the view, joined, sums every profile). At 1M
    customers with 420k profiles, the nightly CASE over everyone ran the subquery 590k times:
    0.7-1.0 s, the join 0.1 s."""
    if everyone:
        return Coalesce(F("social_total__followers"), Value(0), output_field=IntegerField())
    totals = (
        SocialProfile.objects.filter(customer=OuterRef("pk"))
        .order_by()
        .values("customer")
        .annotate(total=Sum("followers"))
        .values("total")
    )
    return Coalesce(Subquery(totals, output_field=IntegerField()), Value(0))


class DaysSince(Func):
    """Whole local days from a timestamp to `as_of` (NULL for NULL): computed when read, so
    that nothing stored moves from one day to the next."""

    output_field = IntegerField()

    def __init__(self, expression, as_of: date):
        super().__init__(expression, Value(as_of))

    def as_sql(self, compiler, connection, **extra):
        ts, ts_params = compiler.compile(self.source_expressions[0])
        day, day_params = compiler.compile(self.source_expressions[1])
        if connection.vendor == "postgresql":
            sql = f"(CAST({day} AS date) - CAST(({ts} AT TIME ZONE %s) AS date))"
            return sql, (*day_params, *ts_params, settings.TIME_ZONE)
        sql = f"CAST(julianday({day}) - julianday(date({ts})) AS INTEGER)"
        return sql, (*day_params, *ts_params)


def _rule_annotations(as_of: date, *, everyone: bool = False) -> dict:
    return {
        "effort": F("service_effort"),
        "buyer_type": F("metrics__buyer_type"),
        "aov": F("metrics__aov"),
        "order_count": F("metrics__order_count"),
        "orders_window": F("metrics__orders_window"),
        "days_since_last_order": DaysSince(F("metrics__last_order_at"), as_of),
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
        "followers": _followers(everyone=everyone),
        "has_owner": ExpressionWrapper(Q(owner__isnull=False), output_field=BooleanField()),
        **{name: factory(as_of) for name, factory in _EXTRA_ANNOTATIONS.items()},
    }


# Fields added by apps above segments (e.g. surveys' latest_nps_category), see below, and for
# each the function naming the customers whose value may have changed since a moment.
_EXTRA_ANNOTATIONS: dict = {}
_EXTRA_CHANGED: dict = {}

assert set(rules_mod.FIELDS) == _MODEL_FIELDS | set(_rule_annotations(date(2000, 1, 1)))


def rule_field_register(*, spec: rules_mod.FieldSpec, annotation, changed_since=None) -> None:
    """Let an app above segments add a rule field without segments importing it: call from
    its AppConfig.ready(). `annotation(as_of)` returns the Customer expression, e.g. a
    Subquery of the latest NPS category. `changed_since(moment)`, if given, returns a values
    queryset of customer ids whose value may have changed since `moment`, so that the nightly
    job re-evaluates only those; without it a bucket using the field is re-evaluated for every
    customer. Registering the same name again replaces it."""
    if spec.kind not in rules_mod.OPERATORS_BY_KIND:
        raise ValueError(f"unknown field kind {spec.kind!r}")
    if spec.name in _MODEL_FIELDS or hasattr(Customer, spec.name):
        raise ValueError(f"{spec.name!r} clashes with a customer field")
    rules_mod.FIELDS[spec.name] = spec
    _EXTRA_ANNOTATIONS[spec.name] = annotation
    _EXTRA_CHANGED[spec.name] = changed_since


def extra_field_changes(name: str):
    """The changed_since function registered with extra rule field `name`, else None (also
    None for built-in fields)."""
    return _EXTRA_CHANGED.get(name)


def is_extra_field(name: str) -> bool:
    return name in _EXTRA_ANNOTATIONS


def customers_for_rules(*, as_of: date | None = None, everyone: bool = False) -> QuerySet[Customer]:
    """Customers annotated with every registry field (rules.FIELDS), so that a compiled rule
    Q filters in SQL. Only annotations a query uses are computed (values()/count() drop the
    rest). `as_of` fixes the year for age; today by default. `everyone`: the query will read
    every customer, so that per-customer subqueries are better joined (_followers)."""
    as_of = as_of or timezone.localdate()
    return Customer.objects.annotate(**_rule_annotations(as_of, everyone=everyone))


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
    *,
    as_of: date,
    customer_ids=None,
    buckets: list[Bucket] | None = None,
    scope_table: str | None = None,
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
    everyone = customer_ids is None and scope_table is None
    qs = customers_for_rules(as_of=as_of, everyone=everyone)
    if customer_ids is not None:
        qs = qs.filter(pk__in=list(customer_ids))
    if scope_table is not None:  # a temporary table of customer ids (the nightly job's scope)
        qs = qs.filter(pk__in=RawSQL(f"SELECT customer_id FROM {scope_table}", []))  # noqa: S608, S611
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
    qs = customers_for_rules(as_of=as_of, everyone=True).filter(q)
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

from django.db import connection  # noqa: E402
from django.db.models import DecimalField  # noqa: E402
from django.utils.translation import gettext_lazy  # noqa: E402

from crm.models import FollowUp  # noqa: E402

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


@dataclass
class RoiAggregates:
    """What one scan of crm.CustomerMetrics gives the nightly job: per bucket key (0 =
    Unsegmented) the sums behind a RoiSnapshot, per bucket the payback histogram, the whale
    curve's bins and the cohort sizes."""

    buckets: dict
    payback: dict  # bucket key -> [(days, customers)] ascending
    whale: list[tuple]  # (bin, customers, contribution sum) or None on SQLite
    cohorts: dict  # month index -> (customers, acquisition cost sum, customers with a cost)

    def plus(self, change: RoiAggregates) -> RoiAggregates:
        """These aggregates with `change` (signed sums, roi_aggregates_moved) added; groups
        left without rows are dropped, as a GROUP BY would not return them."""

        def add(a, b):  # an empty SUM is NULL
            return (0 if a is None else a) + (0 if b is None else b)

        buckets = {}
        for key in self.buckets.keys() | change.buckets.keys():
            mine, theirs = self.buckets.get(key, {}), change.buckets.get(key, {})
            row = {name: add(mine.get(name), theirs.get(name)) for name in _AGG_NAMES}
            if row["customers"]:
                buckets[key] = row
        payback = _payback_plus(self.payback, change.payback)
        whale = None
        if self.whale is not None and change.whale is not None:
            bins: dict = {}
            for b, n, amount in [*self.whale, *change.whale]:
                was = bins.get(b, (0, 0))
                bins[b] = (was[0] + n, add(was[1], amount))
            whale = sorted((b, n, amount) for b, (n, amount) in bins.items() if n)
        cohorts = {}
        for month in self.cohorts.keys() | change.cohorts.keys():
            mine = self.cohorts.get(month, (0, 0, 0))
            theirs = change.cohorts.get(month, (0, 0, 0))
            cohort = tuple(add(a, b) for a, b in zip(mine, theirs, strict=True))
            if cohort[0]:
                cohorts[month] = cohort
        return RoiAggregates(buckets=buckets, payback=payback, whale=whale, cohorts=cohorts)

    def to_json(self) -> dict:
        """JSON-ready and exact: money as decimal strings (from_json reads it back)."""

        def v(x):
            return str(x) if isinstance(x, Decimal) else x

        return {
            "buckets": {
                str(k): {n: v(x) for n, x in row.items()} for k, row in self.buckets.items()
            },
            "payback": {str(k): [list(r) for r in rows] for k, rows in self.payback.items()},
            "whale": None if self.whale is None else [[b, n, v(a)] for b, n, a in self.whale],
            "cohorts": {str(k): [v(x) for x in row] for k, row in self.cohorts.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> RoiAggregates:
        def v(x):
            return Decimal(x) if isinstance(x, str) else x

        whale = data["whale"]
        return cls(
            buckets={
                int(k): {n: v(x) for n, x in row.items()} for k, row in data["buckets"].items()
            },
            payback={int(k): [tuple(r) for r in rows] for k, rows in data["payback"].items()},
            whale=None if whale is None else [(b, n, v(a)) for b, n, a in whale],
            cohorts={int(k): tuple(v(x) for x in row) for k, row in data["cohorts"].items()},
        )


# The sums behind a RoiSnapshot: (name, kind, SQL over a metrics row). "rows" counts rows, "sum"
# adds the expression, "count" counts its non-NULL values, "flag" counts the rows where it
# holds; {as_of} is the date the figures are for.
_AGGREGATES = (
    ("customers", "rows", ""),
    ("revenue", "sum", "revenue_window"),
    ("margin", "sum", "margin_window"),
    ("cost", "sum", "cost_to_serve_window"),
    ("effort_sum", "sum", "service_effort"),
    ("effort_n", "count", "service_effort"),
    ("influence_sum", "sum", "influence"),
    ("churned", "flag", "status = 'churned'"),
    ("clife", "sum", "contribution_lifetime"),
    ("cac", "sum", "acquisition_cost"),
    ("cac_n", "count", "acquisition_cost"),
    (
        "eligible",
        "flag",
        "acquisition_cost > 0 AND acquisition_date IS NOT NULL AND acquisition_date <= {as_of}",
    ),
    ("cwindow", "sum", "contribution_window"),
    ("served", "flag", "minutes_window > 0"),  # the rows the suggested effort ranks
)
_AGG_NAMES = tuple(name for name, _kind, _sql in _AGGREGATES)
# Whale-curve bins: 40 per power of ten of |contribution|, ordered like the values, so that a
# cumulative sum over bins gives exact points of the curve without sorting a million rows.
_WHALE_BIN = (
    "CASE WHEN contribution_window >= 0 "
    "THEN floor(log(1 + contribution_window::float8) * 40) "
    "ELSE -floor(log(1 - contribution_window::float8) * 40) - 1 END"
)
# The metrics columns those read (an image of a row before the job's writes carries them all).
_AGG_COLUMNS = (
    "bucket_id, revenue_window, margin_window, cost_to_serve_window, service_effort, "
    "influence, status, contribution_lifetime, acquisition_cost, acquisition_date, "
    "contribution_window, payback_days, acquisition_month, minutes_window"
)


def _aggregate(kind: str, sql: str, sign: str | None) -> str:
    """SQL of one aggregate; with `sign` (a column of +1 and -1), its signed sum: the change
    that rows of sign +1 (rows as they are now) and -1 (as they were) make to it."""
    if sign is None:
        return {
            "rows": "COUNT(*)",
            "sum": f"SUM({sql})",
            "count": f"COUNT({sql})",
            "flag": f"SUM(CASE WHEN {sql} THEN 1 ELSE 0 END)",
        }[kind]
    return {
        "rows": f"SUM({sign})",
        "sum": f"SUM({sign} * {sql})",
        "count": f"SUM(CASE WHEN {sql} IS NOT NULL THEN {sign} ELSE 0 END)",
        "flag": f"SUM(CASE WHEN {sql} THEN {sign} ELSE 0 END)",
    }[kind]


def _cents(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(Decimal("0.01"))


def _aggregates_from(
    source: str, params: dict, *, sign: str | None, day: str, payback: bool = True
) -> RoiAggregates:
    """The four GROUP BYs of roi_aggregates over `source` (a table or subquery of metrics rows);
    with `sign`, signed (see _aggregate), and `day` the SQL of each row's date. Without
    `payback`, the payback histogram is left empty (_payback_from)."""
    postgres = connection.vendor == "postgresql"
    month = (
        "(date_part('year', acquisition_month) * 12 + date_part('month', acquisition_month) - 1)"
        if postgres
        else "(CAST(strftime('%%Y', acquisition_month) AS INTEGER) * 12 "
        "+ CAST(strftime('%%m', acquisition_month) AS INTEGER) - 1)"
    )
    bucket = "COALESCE(bucket_id, 0)"
    sums = ", ".join(
        _aggregate(kind, sql.replace("{as_of}", day), sign) for _name, kind, sql in _AGGREGATES
    )
    rows = _aggregate("rows", "", sign)

    def money(values):  # SQLite sums money as floats: back to cents
        return [_cents(v) if isinstance(v, float) else v for v in values]

    out = RoiAggregates(buckets={}, payback={}, whale=None, cohorts={})
    with connection.cursor() as cur:
        cur.execute(f"SELECT {bucket}, {sums} FROM {source} GROUP BY {bucket}", params)  # noqa: S608
        for key, *values in cur.fetchall():
            out.buckets[key] = dict(zip(_AGG_NAMES, money(values), strict=True))
        if postgres:
            cur.execute(
                f"SELECT {_WHALE_BIN}, {rows}, {_aggregate('sum', 'contribution_window', sign)} "  # noqa: S608
                f"FROM {source} GROUP BY 1",
                params,
            )
            out.whale = [(int(b), n, amount) for b, n, amount in cur.fetchall()]
        cur.execute(
            f"SELECT {month}, {rows}, {_aggregate('sum', 'acquisition_cost', sign)}, "  # noqa: S608
            f"{_aggregate('count', 'acquisition_cost', sign)} "
            f"FROM {source} WHERE acquisition_month IS NOT NULL GROUP BY 1",
            params,
        )
        for cohort, count, cac, cac_n in cur.fetchall():
            out.cohorts[int(cohort)] = (count, *money([cac]), cac_n)
    if payback:
        out.payback = _payback_from(source, params, sign=sign)
    return out


def _payback_from(source: str, params: dict, *, sign: str | None) -> dict:
    """{bucket key: [(payback days, customers)] ascending} over `source`, as _aggregates_from."""
    bucket = "COALESCE(bucket_id, 0)"
    out: dict = {}
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT {bucket}, payback_days, {_aggregate('rows', '', sign)} "  # noqa: S608
            f"FROM {source} WHERE payback_days IS NOT NULL GROUP BY {bucket}, payback_days",
            params,
        )
        for key, days, count in cur.fetchall():
            out.setdefault(key, []).append((days, count))
    for rows in out.values():
        rows.sort()
    return out


def _payback_plus(histogram: dict, change: dict) -> dict:
    """Payback `histogram` ({bucket key: [(days, customers)]}) with the signed counts of
    `change` added; days left without customers are dropped, as a GROUP BY would not return
    them."""
    payback = {}
    for key in histogram.keys() | change.keys():
        days: dict = {}
        for day, n in [*histogram.get(key, []), *change.get(key, [])]:
            days[day] = days.get(day, 0) + n
        if rows := sorted((day, n) for day, n in days.items() if n):
            payback[key] = rows
    return payback


def roi_aggregates(*, as_of: date, payback: bool = True) -> RoiAggregates:
    """The metrics table grouped by bucket, by bucket and payback days, by whale bin
    (PostgreSQL only) and by cohort: one plain GROUP BY each, with only the sums it needs.
    PostgreSQL runs those in parallel workers, which it never does for GROUPING SETS: four
    parallel scans of a million rows took 1.2 s against 2.1 s for one GROUPING SETS pass.
    Without `payback`, the payback histogram is left empty: roi_payback gives it (the nightly
    job groups the rest before a full run's payback days are written)."""
    table = CustomerMetrics._meta.db_table
    # the parameter also makes SQLite read %% as %
    return _aggregates_from(table, {"as_of": as_of}, sign=None, day="%(as_of)s", payback=payback)


def roi_payback(*, as_of: date) -> dict:
    """The payback histogram of roi_aggregates alone."""
    return _payback_from(CustomerMetrics._meta.db_table, {"as_of": as_of}, sign=None)


def roi_payback_moved(histogram: dict, *, moved: str) -> dict:
    """roi_payback from `histogram`, the one of the metrics table before some payback days
    were written, and `moved`, a table of those customers with their days before and after
    (customer_id, old_days, new_days: crm.metrics.PAYBACK_MOVED_TABLE): their days as they
    were taken off, as they are added, in their buckets as they are. Reads those customers
    alone: a full run groups every row while its second connection still computes the payback
    days, and only the few that moved after it (at 1M customers: 0.25 s off the end)."""
    table = CustomerMetrics._meta.db_table
    source = (
        f"(SELECT m.bucket_id, x.old_days AS payback_days, -1 AS sign FROM {moved} x "  # noqa: S608
        f"JOIN {table} m ON m.customer_id = x.customer_id UNION ALL "
        f"SELECT m.bucket_id, x.new_days, 1 FROM {moved} x "
        f"JOIN {table} m ON m.customer_id = x.customer_id) AS d"
    )
    return _payback_plus(histogram, _payback_from(source, {}, sign="sign"))


def roi_aggregates_moved(
    previous: RoiAggregates, *, as_of: date, previous_as_of: date, before_images: str
) -> RoiAggregates:
    """roi_aggregates(as_of=as_of) from `previous`, the aggregates of the metrics table as it
    was before this run (as of `previous_as_of`), and the images of the rows the run wrote as
    they were then (`before_images`, crm.metrics.before_images_create): the sums over those
    rows as they were are taken off, over the same rows as they are now added. A few thousand
    rows are read instead of every row. PostgreSQL only.

    Exact only if every row whose aggregated columns differ, or whose eligibility for payback
    moves with the date, has an image; segments.jobs makes sure of that (it locks out other
    writers and images the customers re-aggregated, whose rows say when the date moves
    them)."""
    table, moved = CustomerMetrics._meta.db_table, "segments_tmp_moved"
    now = ", ".join("m." + c.strip() for c in _AGG_COLUMNS.split(","))
    with connection.cursor() as cur:
        # A temporary table has no statistics of its own; the join reads the key only.
        cur.execute(f"ANALYZE {before_images} (image_of, present)")
        cur.execute(f"DROP TABLE IF EXISTS {moved}")
        # One index lookup per image: with the metrics table compact (after VACUUM FULL, 262
        # MB for 1M rows) the planner chose a hash join over a scan of every row instead
        # (39k images: 0.12-0.15 s by key -> 0.47-0.57 s).
        with key_lookups(cur):
            cur.execute(
                f"CREATE TEMPORARY TABLE {moved} AS "  # noqa: S608
                f"SELECT {_AGG_COLUMNS}, -1 AS sign, CAST(%(previous_as_of)s AS date) AS day "
                f"FROM {before_images} WHERE present "
                f"UNION ALL SELECT {now}, 1, CAST(%(as_of)s AS date) "
                f"FROM {before_images} b JOIN {table} m ON m.customer_id = b.image_of",
                {"as_of": as_of, "previous_as_of": previous_as_of},
            )
        change = _aggregates_from(moved, {}, sign="sign", day="day")
        cur.execute(f"DROP TABLE {moved}")
    return previous.plus(change)


def whale_from_bins(bins: list[tuple]) -> list[dict]:
    """The whale curve from roi_aggregates' bins: [{"share": % of customers, "cumulative":
    money}], most valuable customers first, one exact point per non-empty bin."""
    total = sum(n for _bin, n, _sum in bins)
    curve = [{"share": 0.0, "cumulative": 0.0}]
    seen, running = 0, Decimal(0)
    for _bin, n, amount in sorted(bins, key=lambda b: b[0], reverse=True):
        seen += n
        running += amount or 0
        curve.append({"share": round(100 * seen / total, 2), "cumulative": float(running)})
    return curve


def whale_curve(*, points: int = WHALE_POINTS) -> list[dict]:
    """Cumulative window contribution by customer rank (most valuable first), sampled in SQL to
    about `points` points: [{"share": % of customers, "cumulative": money}]. Sorts every
    metrics row: the nightly job uses whale_from_bins on PostgreSQL instead."""
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


def cohort_triangle(
    *, months: int = COHORT_MONTHS, today: date | None = None, sizes: dict | None = None
) -> dict:
    """Acquisition-month cohorts (acquisition date, else first order) of the last `months`
    months: customers, average CAC, cumulative contribution per customer by months since
    acquisition (margin - cost to serve), and the first month it reaches the average CAC.

    Reads the cohort table the metrics refresh maintains (crm.CohortContribution) and the
    cohort sizes (`sizes` from roi_aggregates, else one GROUP BY over the metrics table);
    Python only reshapes those few hundred cells. JSON-ready (the nightly job stores it in
    JobRun.reports): {"offsets": [0..], "rows": [{"cohort": "YYYY-MM", "customers", "cac":
    "0.00" or None, "cells": ["0.00" or None], "recovered": month offset or None}]}.
    """
    today = today or timezone.localdate()
    now_idx = today.year * 12 + today.month - 1
    first_idx = now_idx - months + 1
    if sizes is None:
        sizes = roi_aggregates(as_of=today).cohorts
    first_month = date(first_idx // 12, first_idx % 12 + 1, 1)
    now_month = date(now_idx // 12, now_idx % 12 + 1, 1)
    amounts: dict = defaultdict(dict)
    cells = CohortContribution.objects.filter(
        cohort__gte=first_month, cohort__lte=now_month, month__lte=now_month
    ).values_list("cohort", "month", "units")
    for cohort, month, units in cells:
        idx = cohort.year * 12 + cohort.month - 1
        k = month.year * 12 + month.month - 1 - idx
        if k >= 0:
            amounts[idx][k] = Decimal(units) / CohortContribution.UNITS_PER_CURRENCY
    offsets = list(range(months))
    rows = []
    for cohort in sorted((c for c in sizes if first_idx <= c <= now_idx), reverse=True):
        size, cac_sum, cac_n = sizes[cohort]
        cac = (Decimal(cac_sum) / cac_n).quantize(Decimal("0.01")) if cac_n else None
        age = now_idx - cohort  # months elapsed: later cells are in the future
        running, row_cells, recovered = Decimal(0), [], None
        for k in offsets:
            if k > age:
                row_cells.append(None)
                continue
            running += amounts[cohort].get(k, Decimal(0))
            per_customer = (running / size).quantize(Decimal("0.01"))
            row_cells.append(str(per_customer))
            if recovered is None and cac is not None and cac > 0 and per_customer >= cac:
                recovered = k
        rows.append(
            {
                "cohort": f"{cohort // 12:04d}-{cohort % 12 + 1:02d}",
                "customers": size,
                "cac": None if cac is None else str(cac),
                "cells": row_cells,
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
