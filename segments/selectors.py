"""Reads for buckets: the rule-ready customer queryset, bucket lists, previews, membership."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import date
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
    }


assert set(rules_mod.FIELDS) == _MODEL_FIELDS | set(_rule_annotations(date(2000, 1, 1)))


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


def bucket_assignment(
    *, as_of: date, customer_ids=None, buckets: list[Bucket] | None = None
) -> tuple[QuerySet, list[Bucket], list[Bucket]]:
    """One query giving each customer's bucket by priority: rows (id, new_bucket, new_reason).

    A single CASE expression walks the active buckets in priority order, so the first match
    wins and NULL means Unsegmented. Returns (queryset, buckets used, buckets skipped because
    their stored rules no longer validate).
    """
    buckets = list(active_buckets()) if buckets is None else buckets
    bucket_whens, reason_whens, used, skipped = [], [], [], []
    for bucket in buckets:
        q = _safe_compile(bucket.rules)
        if q is None:
            skipped.append(bucket)
            continue
        used.append(bucket)
        bucket_whens.append(When(q, then=Value(bucket.pk)))
        clean = rules_mod.validate(bucket.rules)
        for path, item in rules_mod.top_level_branches(clean):
            words = rules_mod.item_words(item)
            if path:
                words = gettext("condition %(path)s, %(words)s") % {"path": path, "words": words}
            reason_whens.append(
                When(rules_mod.compile_item(item), then=Value(_reason_text(bucket, words)))
            )
    unsegmented = gettext("No active bucket matched")
    qs = customers_for_rules(as_of=as_of)
    if customer_ids is not None:
        qs = qs.filter(pk__in=list(customer_ids))
    qs = qs.annotate(
        new_bucket=Case(*bucket_whens, default=Value(None), output_field=IntegerField())
        if bucket_whens
        else Value(None, output_field=IntegerField()),
        new_reason=Case(*reason_whens, default=Value(unsegmented), output_field=CharField())
        if reason_whens
        else Value(unsegmented, output_field=CharField()),
    ).values("pk", "new_bucket", "new_reason")
    return qs.order_by(), used, skipped


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
