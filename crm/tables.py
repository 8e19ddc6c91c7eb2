"""django-tables2 tables of the crm screens."""

import django_tables2 as tables
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from .models import Customer


class CapPerPageMixin:
    MAX_PER_PAGE = 200

    def paginate(self, paginator_class=None, per_page=None, page=1, *args, **kwargs):
        per_page = max(1, min(int(per_page or self.per_page_default), self.MAX_PER_PAGE))
        return super().paginate(paginator_class, per_page, page, *args, **kwargs)

    per_page_default = 50


class CustomerTable(CapPerPageMixin, tables.Table):
    name = tables.LinkColumn(
        "crm:customer_detail",
        args=[tables.A("pk")],
        accessor="full_name",
        order_by=("last_name", "first_name"),
        verbose_name=_("Name"),
    )
    owner = tables.Column(verbose_name=_("Owner"), order_by=("owner__last_name",))
    buyer_type = tables.Column(
        accessor="metrics__buyer_type", verbose_name=_("Buyer type"), default=""
    )
    decile = tables.Column(accessor="metrics__value_decile", verbose_name=_("Decile"), default="")
    channel = tables.Column(
        accessor="metrics__preferred_channel", verbose_name=_("Channel"), default=""
    )
    status = tables.Column(verbose_name=_("Status"))

    class Meta:
        model = Customer
        fields = ("id", "email", "phone", "city", "service_effort", "influence")
        sequence = (
            "id",
            "name",
            "email",
            "phone",
            "city",
            "status",
            "owner",
            "service_effort",
            "influence",
            "buyer_type",
            "decile",
            "channel",
        )
        order_by = ("id",)
        empty_text = _("No customers match.")

    def render_status(self, record):
        return format_html(
            '<span class="badge {}">{}</span>', record.status, record.get_status_display()
        )

    def render_buyer_type(self, record):
        return record.metrics.get_buyer_type_display()

    def render_channel(self, record):
        return record.metrics.get_preferred_channel_display()


class HighValueTable(CapPerPageMixin, tables.Table):
    customers = tables.CheckBoxColumn(accessor="pk", attrs={"th__input": {"id": "select-all"}})
    name = tables.LinkColumn(
        "crm:customer_detail",
        args=[tables.A("pk")],
        accessor="full_name",
        order_by=("last_name", "first_name"),
        verbose_name=_("Name"),
    )
    owner = tables.Column(verbose_name=_("Owner"), default="", order_by=("owner__last_name",))
    contribution_total = tables.Column(verbose_name=_("Lifetime contribution"))
    margin_total = tables.Column(verbose_name=_("Lifetime margin"))
    cost_to_serve_total = tables.Column(verbose_name=_("Cost to serve"))

    class Meta:
        model = Customer
        fields = ("service_effort", "status")
        sequence = (
            "customers",
            "name",
            "owner",
            "service_effort",
            "status",
            "contribution_total",
            "margin_total",
            "cost_to_serve_total",
        )
        order_by = ("-contribution_total",)
        empty_text = _("No accounts in the top 10 %.")

    def _money(self, value):
        return f"{value:,.2f}"

    def render_contribution_total(self, value):
        return self._money(value)

    def render_margin_total(self, value):
        return self._money(value)

    def render_cost_to_serve_total(self, value):
        return self._money(value)
