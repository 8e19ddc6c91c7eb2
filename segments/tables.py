"""django-tables2 tables of the bucket screens."""

import django_tables2 as tables
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from crm.models import Customer

from . import rules as rules_mod
from .models import Bucket


class BucketTable(tables.Table):
    name = tables.Column(verbose_name=_("Name"))
    member_count = tables.Column(verbose_name=_("Members"))
    rules_words = tables.Column(accessor="rules", verbose_name=_("Rules"))
    rules_version = tables.Column(accessor="version", verbose_name=_("Rules version"))

    class Meta:
        model = Bucket
        fields = ("priority", "name", "active")
        sequence = ("priority", "name", "active", "member_count", "rules_words", "rules_version")
        order_by = ("priority",)
        orderable = False
        empty_text = _("No buckets yet.")

    def render_name(self, record, value):
        return format_html(
            '<span class="swatch" style="background:{}"></span><a href="{}">{}</a>',
            record.colour,
            reverse("segments:bucket_detail", args=[record.pk]),
            value,
        )

    def render_rules_words(self, value):
        words = rules_mod.describe(value)
        return words if len(words) <= 160 else words[:159] + "…"

    def render_active(self, value):
        return _("yes") if value else _("no")


class MemberTable(tables.Table):
    name = tables.LinkColumn(
        "crm:customer_detail",
        args=[tables.A("pk")],
        accessor="full_name",
        order_by=("last_name", "first_name"),
        verbose_name=_("Name"),
    )
    buyer_type = tables.Column(
        accessor="metrics__buyer_type", verbose_name=_("Buyer type"), default=""
    )
    decile = tables.Column(accessor="metrics__value_decile", verbose_name=_("Decile"), default="")
    contribution = tables.Column(
        accessor="metrics__contribution_window",
        verbose_name=_("Contribution (365 days)"),
        default="",
    )
    since = tables.Column(accessor="current_membership__since", verbose_name=_("Member since"))
    status = tables.Column(verbose_name=_("Status"))

    class Meta:
        model = Customer
        fields = ("id", "email", "city", "service_effort", "influence")
        sequence = (
            "id",
            "name",
            "email",
            "city",
            "status",
            "service_effort",
            "influence",
            "buyer_type",
            "decile",
            "contribution",
            "since",
        )
        order_by = ("id",)
        empty_text = _("No members match.")

    def render_status(self, record):
        return format_html(
            '<span class="badge {}">{}</span>', record.status, record.get_status_display()
        )

    def render_buyer_type(self, record):
        return record.metrics.get_buyer_type_display()
