"""Filter set of the customer list."""

import django_filters
from django import forms
from django.apps import apps
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from .models import BuyerType, Channel, CustomerStatus
from .querysets import SEARCH_MIN_WORD, search_words
from .selectors import customer_search, staff_list

DECILES = [(i, str(i)) for i in range(1, 11)]
UNSEGMENTED = "none"


class IntRangeWidget(django_filters.widgets.RangeWidget):
    def __init__(self, attrs=None):
        super().__init__(attrs={"type": "number", "min": 0, "max": 10, "size": 3, **(attrs or {})})


class IntRangeField(django_filters.fields.RangeField):
    widget = IntRangeWidget

    def __init__(self, *args, **kwargs):
        fields = (
            forms.IntegerField(min_value=0, max_value=10),
            forms.IntegerField(min_value=0, max_value=10),
        )
        super().__init__(fields, *args, **kwargs)


class IntRangeFilter(django_filters.RangeFilter):
    field_class = IntRangeField


def validate_search(value: str) -> None:
    """A search needs one word of at least three characters: shorter words cannot use the
    trigram index and would scan every customer."""
    if value and not search_words(value):
        raise ValidationError(
            _("Enter at least %(n)d characters in one word."),
            code="too_short",
            params={"n": SEARCH_MIN_WORD},
        )


def bucket_choices():
    """Active buckets by priority, then "Unsegmented". The buckets come from the segments app
    when it is installed (imported here, lazily: crm never depends on segments)."""
    choices = []
    if apps.is_installed("segments"):
        from segments.selectors import active_buckets

        choices = [(str(pk), name) for pk, name in active_buckets().values_list("pk", "name")]
    return [*choices, (UNSEGMENTED, _("Unsegmented"))]


class CustomerFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        label=_("Search"), method="filter_search", max_length=100, validators=[validate_search]
    )
    owner = django_filters.ModelChoiceFilter(
        label=_("Owner"),
        queryset=staff_list(),
        null_label=_("Unassigned"),
        null_value="none",
    )
    status = django_filters.ChoiceFilter(label=_("Status"), choices=CustomerStatus.choices)
    buyer_type = django_filters.ChoiceFilter(
        label=_("Buyer type"), field_name="metrics__buyer_type", choices=BuyerType.choices
    )
    effort = IntRangeFilter(label=_("Effort"), field_name="service_effort")
    influence = IntRangeFilter(label=_("Influence"), field_name="influence")
    decile = django_filters.ChoiceFilter(
        label=_("Value decile"), field_name="metrics__value_decile", choices=DECILES
    )
    city = django_filters.CharFilter(label=_("City"), lookup_expr="iexact", max_length=100)
    channel = django_filters.ChoiceFilter(
        label=_("Channel"), field_name="metrics__preferred_channel", choices=Channel.choices
    )
    bucket = django_filters.ChoiceFilter(
        label=_("Bucket"), choices=bucket_choices, method="filter_bucket", empty_label=_("any")
    )

    def filter_search(self, queryset, name, value):
        return customer_search(qs=queryset, text=value)

    def filter_bucket(self, queryset, name, value):
        """Current bucket (segments' CurrentMembership). Unsegmented also covers customers the
        nightly job has not placed yet (no membership row)."""
        if value == UNSEGMENTED:
            return queryset.filter(current_membership__bucket__isnull=True)
        return queryset.filter(current_membership__bucket_id=int(value))
