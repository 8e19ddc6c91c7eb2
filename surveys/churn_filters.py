"""Filters of the churn interview queue."""

import django_filters
from django.utils.translation import gettext_lazy as _

from crm.models import Customer

from . import churn_selectors


class ChurnQueueFilter(django_filters.FilterSet):
    owner = django_filters.ModelChoiceFilter(
        label=_("Owner"),
        queryset=lambda request: churn_selectors.staff_users(),
        null_label=_("No owner"),
        empty_label=_("Any owner"),
    )
    bucket = django_filters.ModelChoiceFilter(
        label=_("Bucket"),
        field_name="current_membership__bucket",
        queryset=lambda request: churn_selectors.buckets(),
        null_label=_("Unsegmented"),
        empty_label=_("Any bucket"),
    )

    class Meta:
        model = Customer
        fields = ["owner", "bucket"]
