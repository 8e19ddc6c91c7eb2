"""Filter sets of the bucket screens."""

import django_filters
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from crm.models import BuyerType, Customer, CustomerStatus


class MemberFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label=_("Name or email"), max_length=100)
    city = django_filters.CharFilter(lookup_expr="iexact", label=_("City"), max_length=100)
    status = django_filters.ChoiceFilter(choices=CustomerStatus.choices, label=_("Status"))
    buyer_type = django_filters.ChoiceFilter(
        field_name="metrics__buyer_type", choices=BuyerType.choices, label=_("Buyer type")
    )
    decile = django_filters.NumberFilter(
        field_name="metrics__value_decile", label=_("Value decile"), min_value=1, max_value=10
    )

    class Meta:
        model = Customer
        fields = []

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(first_name__icontains=value) | Q(last_name__icontains=value) | Q(email__iexact=value)
        )
