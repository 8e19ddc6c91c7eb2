"""Filters of the churn interview queue."""

import django_filters
from django import forms
from django.utils.translation import gettext_lazy as _

from crm.models import Customer

from . import churn_selectors
from .models import ChurnInterview, ReasonCategory, ReasonCode, WinbackOutcome


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


class ChurnInterviewFilter(django_filters.FilterSet):
    category = django_filters.ChoiceFilter(
        label=_("Category"),
        field_name="primary_reason__category",
        choices=ReasonCategory.choices,
        empty_label=_("Any category"),
    )
    primary_reason = django_filters.ModelChoiceFilter(
        label=_("Primary reason"),
        queryset=lambda request: ReasonCode.objects.order_by("category", "code"),
        empty_label=_("Any reason"),
    )
    winback_outcome = django_filters.ChoiceFilter(
        label=_("Win-back"), choices=WinbackOutcome.choices, empty_label=_("Any outcome")
    )
    interviewed_from = django_filters.DateFilter(
        label=_("Interviewed from"),
        field_name="interviewed_on",
        lookup_expr="gte",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    interviewed_to = django_filters.DateFilter(
        label=_("to"),
        field_name="interviewed_on",
        lookup_expr="lte",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    class Meta:
        model = ChurnInterview
        fields = ["category", "primary_reason", "winback_outcome"]
