"""Shared builders for the churn interview tests."""

import datetime as dt
from decimal import Decimal

from django.utils import timezone

from crm.models import CustomerMetrics, CustomerStatus
from crm.tests.factories import CustomerFactory
from surveys.models import ReasonCategory, ReasonCode


def churned(**kwargs):
    return CustomerFactory(status=CustomerStatus.CHURNED, **kwargs)


def metrics(customer, contribution) -> CustomerMetrics:
    return CustomerMetrics.objects.create(
        customer=customer,
        contribution_lifetime=Decimal(str(contribution)),
        last_order_at=timezone.now() - dt.timedelta(days=200),
        value_decile=5,
        status=customer.status,
    )


def reason(code="price", category=ReasonCategory.PRICE, label_en="Too expensive", **kw):
    return ReasonCode.objects.create(
        code=code, category=category, label_en=label_en, label_ko=kw.pop("label_ko", ""), **kw
    )
