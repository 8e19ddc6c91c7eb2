"""The bucket-rule field surveys adds: latest_nps_category (promoter / passive / detractor).

segments owns the rule registry and may not import surveys, so surveys registers the field
from SurveysConfig.ready() (segments.selectors.rule_field_register). The annotation is one
correlated subquery, computed only by queries whose rules use the field.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Case, CharField, OuterRef, Subquery, Value, When
from django.utils.translation import gettext_lazy as _

from crm.metrics import metrics_params

from .models import Answer, QuestionKind

NAME = "latest_nps_category"
CHOICES = (
    ("promoter", _("Promoter (9-10)")),
    ("passive", _("Passive (7-8)")),
    ("detractor", _("Detractor (0-6)")),
)


def latest_nps_category(as_of: dt.date) -> Subquery:
    """Per customer: the category of their latest NPS answer finished by the end of `as_of`
    (NULL when they never gave one, so "is empty" finds them)."""
    category = Case(
        When(value_int__gte=9, then=Value("promoter")),
        When(value_int__gte=7, then=Value("passive")),
        default=Value("detractor"),
        output_field=CharField(),
    )
    latest = (
        Answer.objects.filter(
            response__customer=OuterRef("pk"),
            kind=QuestionKind.NPS,
            value_int__isnull=False,
            response__finished_at__lt=metrics_params(as_of)["end_ts"],
        )
        .order_by("-response__finished_at", "-id")
        .annotate(category=category)
        .values("category")[:1]
    )
    return Subquery(latest, output_field=CharField())


def customers_answered_since(moment: dt.datetime):
    """Customers who finished a response since `moment`: only their latest NPS category can
    have changed (the nightly job re-evaluates their buckets)."""
    from .models import Response

    return (
        Response.objects.filter(finished_at__gte=moment).order_by().values("customer_id").distinct()
    )


def register() -> None:
    """Add the field to segments' rule registry (idempotent: registering again replaces)."""
    from segments.rules import CHOICE, FieldSpec
    from segments.selectors import rule_field_register

    spec = FieldSpec(
        name=NAME, label=_("Latest NPS category"), kind=CHOICE, choices=CHOICES, costly=True
    )
    rule_field_register(
        spec=spec, annotation=latest_nps_category, changed_since=customers_answered_since
    )
