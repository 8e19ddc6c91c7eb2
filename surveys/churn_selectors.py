"""Reads for churn interviews: the interview queue, lists, and the churn report (aggregated in
SQL; Python only reshapes the few aggregated rows)."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.db.models import (
    Avg,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce, TruncMonth

from crm.models import Customer, CustomerStatus, User
from crm.roles import MANAGERS, SUPPORT
from segments.models import Bucket

from .models import (
    ChurnInterview,
    ChurnSecondaryReason,
    ReasonCategory,
    ReasonCode,
    WinbackOutcome,
)


def _churned_without_interview() -> QuerySet[Customer]:
    return (
        Customer.objects.filter(Q(status=CustomerStatus.CHURNED) | Q(cancelled_at__isnull=False))
        .filter(~Exists(ChurnInterview.objects.filter(customer=OuterRef("pk"))))
        .select_related("owner")
        .annotate(
            lost_contribution=F("metrics__contribution_lifetime"),
            last_order_at=F("metrics__last_order_at"),
            value_decile=F("metrics__value_decile"),
            bucket_name=F("current_membership__bucket__name"),
            bucket_colour=F("current_membership__bucket__colour"),
        )
    )


def churn_queue() -> QuerySet[Customer]:
    """The interview queue: customers who left (status churned, or cancelled by staff), have
    metrics and no interview yet, the biggest lost lifetime contribution first.

    Customers without metrics are not here but in `churn_queue_without_metrics`, which comes
    after this one: keeping the metrics join inner lets PostgreSQL walk the
    -contribution_lifetime index and stop after one page, instead of sorting every churned
    customer (measured at 1M customers, 333k churned: ~5 ms instead of ~600 ms for page 1).

    Rows carry `lost_contribution`, `last_order_at`, `value_decile`, `bucket_name` and
    `bucket_colour` as annotations (no extra query per row).
    """
    return (
        _churned_without_interview()
        .filter(metrics__isnull=False)
        .order_by(F("lost_contribution").desc(), "id")
    )


def churn_queue_without_metrics() -> QuerySet[Customer]:
    """The end of the queue: customers who left and have no computed metrics yet (so no known
    contribution), oldest first."""
    return _churned_without_interview().filter(metrics__isnull=True).order_by("id")


def churn_queue_all() -> QuerySet[Customer]:
    """The whole queue in one queryset (both parts, metrics-less customers last). Sorts every
    row, so use it for counts and tests, not for paging a large list."""
    return _churned_without_interview().order_by(F("lost_contribution").desc(nulls_last=True), "id")


def churn_queue_csv_rows(queryset: QuerySet[Customer]) -> Iterator[tuple]:
    """The queue as plain tuples for a streamed CSV, read in chunks (constant memory)."""
    rows = queryset.values_list(
        "id",
        "first_name",
        "last_name",
        "email",
        "status",
        "cancelled_at",
        "last_order_at",
        "lost_contribution",
        "value_decile",
        "bucket_name",
        "owner__username",
    )
    for (
        pk,
        first,
        last,
        email,
        status,
        cancelled,
        last_order,
        lost,
        decile,
        bucket,
        owner,
    ) in rows.iterator(chunk_size=2000):
        yield (
            pk,
            f"{first} {last}".strip(),
            email,
            status,
            cancelled.date().isoformat() if cancelled else "",
            last_order.date().isoformat() if last_order else "",
            "" if lost is None else lost,
            "" if decile is None else decile,
            bucket or "",
            owner or "",
        )


def staff_users() -> QuerySet[User]:
    """Active staff who may interview customers or own accounts."""
    return (
        User.objects.filter(is_active=True)
        .filter(Q(groups__name__in=[SUPPORT, MANAGERS]) | Q(is_superuser=True))
        .distinct()
        .order_by("first_name", "last_name", "username")
    )


def buckets() -> QuerySet[Bucket]:
    return Bucket.objects.order_by("priority", "id")


def churn_interview_list() -> QuerySet[ChurnInterview]:
    return ChurnInterview.objects.select_related(
        "customer", "interviewer", "primary_reason"
    ).order_by("-interviewed_on", "-id")


def churn_interviews_for_customer(*, customer_id: int) -> QuerySet[ChurnInterview]:
    """For the customer page: the customer's churn interview(s), with interviewer and reason."""
    return churn_interview_list().filter(customer_id=customer_id)


def churn_interview_get(*, pk: int) -> ChurnInterview:
    """Raises ChurnInterview.DoesNotExist."""
    return (
        ChurnInterview.objects.select_related(
            "customer", "interviewer", "primary_reason", "follow_up"
        )
        .prefetch_related("secondary_reason_links")
        .get(pk=pk)
    )


def reason_code_list() -> QuerySet[ReasonCode]:
    """All reason codes with how often each is used (as primary and as secondary reason)."""
    primary = ChurnInterview.objects.filter(primary_reason=OuterRef("pk"))
    secondary = ChurnSecondaryReason.objects.filter(reason=OuterRef("pk"))
    return ReasonCode.objects.annotate(
        primary_uses=_count_subquery(primary, "primary_reason"),
        secondary_uses=_count_subquery(secondary, "reason"),
    ).order_by("-is_active", "category", "code")


def _count_subquery(qs: QuerySet, group_by: str) -> Coalesce:
    counted = qs.order_by().values(group_by).annotate(n=Count("pk")).values("n")[:1]
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


# The report ---------------------------------------------------------------------------------


@dataclass
class ChurnReport:
    interviews: int = 0
    lost_contribution: Decimal = Decimal("0")
    avg_likelihood: float | None = None
    by_category: list[dict] = field(default_factory=list)
    by_reason: list[dict] = field(default_factory=list)
    buckets: list[dict] = field(default_factory=list)  # columns of the cross table
    cross: list[dict] = field(default_factory=list)  # one row per category
    months: list[str] = field(default_factory=list)
    month_series: list[dict] = field(default_factory=list)  # one series per category
    winback: list[dict] = field(default_factory=list)
    winback_acceptance: float | None = None


def churn_report(*, date_from: date | None = None, date_to: date | None = None) -> ChurnReport:
    """Churn interviews between the two dates (inclusive; None = open): reasons by category x
    current bucket, interviews and lost lifetime contribution by primary reason and category,
    the monthly trend by category, and win-back outcomes. A constant number of aggregate
    queries, whatever the number of interviews.

    Lost contribution is the customer's lifetime contribution from crm.CustomerMetrics (one
    interview per customer, so nothing is counted twice); customers without metrics add 0.
    """
    interviews = ChurnInterview.objects.all()
    if date_from:
        interviews = interviews.filter(interviewed_on__gte=date_from)
    if date_to:
        interviews = interviews.filter(interviewed_on__lte=date_to)
    interviews = interviews.order_by()
    report = ChurnReport()
    lost = Sum("customer__metrics__contribution_lifetime", default=Decimal("0"))

    totals = interviews.aggregate(n=Count("id"), lost=lost, avg=Avg("likelihood_to_return"))
    report.interviews = totals["n"]
    report.lost_contribution = totals["lost"]
    report.avg_likelihood = totals["avg"]

    category_labels = dict(ReasonCategory.choices)
    by_category = {
        row["primary_reason__category"]: row
        for row in interviews.values("primary_reason__category").annotate(n=Count("id"), lost=lost)
    }
    report.by_category = [
        {
            "category": value,
            "label": category_labels[value],
            "interviews": by_category[value]["n"],
            "lost_contribution": by_category[value]["lost"],
            "share": _share(by_category[value]["n"], report.interviews),
        }
        for value in ReasonCategory.values
        if value in by_category
    ]

    # By primary reason: the stable code, shown with its current wording.
    reason_rows = interviews.values("primary_reason").annotate(
        n=Count("id"), lost=lost, avg=Avg("likelihood_to_return")
    )
    secondary_rows = dict(
        ChurnSecondaryReason.objects.filter(interview__in=interviews)
        .order_by()
        .values("reason")
        .annotate(n=Count("id"))
        .values_list("reason", "n")
    )
    stats = {row["primary_reason"]: row for row in reason_rows}
    used = set(stats) | set(secondary_rows)
    reasons = ReasonCode.objects.filter(pk__in=used) if used else ReasonCode.objects.none()
    report.by_reason = sorted(
        (
            {
                "reason": reason,
                "category_label": category_labels.get(reason.category, reason.category),
                "interviews": stats.get(reason.pk, {}).get("n", 0),
                "secondary": secondary_rows.get(reason.pk, 0),
                "lost_contribution": stats.get(reason.pk, {}).get("lost", Decimal("0")),
                "avg_likelihood": stats.get(reason.pk, {}).get("avg"),
            }
            for reason in reasons
        ),
        key=lambda r: (-r["lost_contribution"], -r["interviews"], r["reason"].code),
    )

    # Category x bucket (the customer's current bucket; None = Unsegmented).
    cells = {
        (row["primary_reason__category"], row["customer__current_membership__bucket"]): row["n"]
        for row in interviews.values(
            "primary_reason__category", "customer__current_membership__bucket"
        ).annotate(n=Count("id"))
    }
    bucket_ids_used = {bucket_id for _, bucket_id in cells}
    report.buckets = [
        {"id": b.pk, "name": b.name, "colour": b.colour}
        for b in buckets()
        if b.pk in bucket_ids_used or b.active
    ]
    report.buckets.append({"id": None, "name": None, "colour": ""})
    report.cross = [
        {
            "label": row["label"],
            "cells": [cells.get((row["category"], b["id"]), 0) for b in report.buckets],
            "total": row["interviews"],
        }
        for row in report.by_category
    ]

    # Trend by month and category.
    monthly = (
        interviews.annotate(month=TruncMonth("interviewed_on"))
        .values("month", "primary_reason__category")
        .annotate(n=Count("id"))
        .order_by("month")
    )
    month_cells: dict[tuple[str, str], int] = {}
    months: list[str] = []
    for row in monthly:
        key = row["month"].strftime("%Y-%m")
        if key not in months:
            months.append(key)
        month_cells[(key, row["primary_reason__category"])] = row["n"]
    report.months = months
    report.month_series = [
        {
            "category": c["category"],
            "label": str(c["label"]),
            "counts": [month_cells.get((m, c["category"]), 0) for m in months],
        }
        for c in report.by_category
    ]

    # Win-back outcomes.
    outcomes = dict(
        interviews.values("winback_outcome")
        .annotate(n=Count("id"))
        .values_list("winback_outcome", "n")
    )
    report.winback = [
        {
            "outcome": value,
            "label": label,
            "interviews": outcomes.get(value, 0),
            "share": _share(outcomes.get(value, 0), report.interviews),
        }
        for value, label in WinbackOutcome.choices
    ]
    decided = outcomes.get(WinbackOutcome.ACCEPTED, 0) + outcomes.get(WinbackOutcome.DECLINED, 0)
    report.winback_acceptance = _share(outcomes.get(WinbackOutcome.ACCEPTED, 0), decided)
    return report


def _share(part: int, whole: int) -> float | None:
    """Percentage, or None when there is nothing to divide by (shown as empty, not 0)."""
    if not whole:
        return None
    return round(100 * part / whole, 1)
