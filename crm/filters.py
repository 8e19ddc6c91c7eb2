"""Filter set of the customer list."""

import django_filters
from django import forms
from django.utils.translation import gettext_lazy as _

from .models import BuyerType, Channel, CustomerStatus
from .selectors import customer_search, staff_list

DECILES = [(i, str(i)) for i in range(1, 11)]


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


class CustomerFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(label=_("Search"), method="filter_search", max_length=100)
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
    decile = django_filters.TypedChoiceFilter(
        label=_("Value decile"), field_name="metrics__value_decile", choices=DECILES, coerce=int
    )
    city = django_filters.CharFilter(label=_("City"), lookup_expr="iexact", max_length=100)
    channel = django_filters.ChoiceFilter(
        label=_("Channel"), field_name="metrics__preferred_channel", choices=Channel.choices
    )

    def filter_search(self, queryset, name, value):
        return customer_search(qs=queryset, text=value)
