"""django-tables2 tables of the churn screens."""

import django_tables2 as tables
from django.db.models import F
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from crm.models import Customer

from .models import ChurnInterview, ReasonCode


class ChurnQueueTable(tables.Table):
    name = tables.Column(
        verbose_name=_("Customer"), accessor="full_name", order_by=("last_name", "first_name", "id")
    )
    status = tables.Column(verbose_name=_("Status"), orderable=False)
    cancelled_at = tables.DateColumn(verbose_name=_("Cancelled"), format="Y-m-d")
    last_order_at = tables.DateColumn(verbose_name=_("Last order"), format="Y-m-d")
    lost_contribution = tables.Column(
        verbose_name=_("Lost lifetime contribution"),
        attrs={"td": {"class": "num"}, "th": {"class": "num"}},
    )
    value_decile = tables.Column(verbose_name=_("Decile"), orderable=False)
    bucket_name = tables.Column(verbose_name=_("Bucket"), orderable=False, default=_("Unsegmented"))
    owner = tables.Column(verbose_name=_("Owner"), orderable=False, default="—")
    record = tables.Column(verbose_name="", accessor="pk", orderable=False, empty_values=())

    class Meta:
        model = Customer
        fields = ()
        sequence = (
            "name",
            "status",
            "cancelled_at",
            "last_order_at",
            "lost_contribution",
            "value_decile",
            "bucket_name",
            "owner",
            "record",
        )
        order_by = ("-lost_contribution",)
        attrs = {"class": "table"}

    def render_status(self, record):
        return format_html(
            '<span class="badge {}">{}</span>', record.status, record.get_status_display()
        )

    def render_bucket_name(self, value, record):
        return format_html(
            '<span class="swatch" style="background:{}"></span>{}', record.bucket_colour, value
        )

    def render_record(self, value):
        url = reverse("surveys:churn_interview_create", args=[value])
        return format_html('<a class="button primary" href="{}">{}</a>', url, _("Record interview"))

    # Plain DESC (no NULLS LAST: the queue's metrics join is inner) so that PostgreSQL can walk
    # the -contribution_lifetime index.
    def order_lost_contribution(self, queryset, is_descending):
        column = F("lost_contribution")
        return queryset.order_by(column.desc() if is_descending else column.asc(), "id"), True

    def order_last_order_at(self, queryset, is_descending):
        column = F("last_order_at")
        ordering = column.desc(nulls_last=True) if is_descending else column.asc(nulls_last=True)
        return queryset.order_by(ordering, "id"), True

    def order_cancelled_at(self, queryset, is_descending):
        column = F("cancelled_at")
        ordering = column.desc(nulls_last=True) if is_descending else column.asc(nulls_last=True)
        return queryset.order_by(ordering, "id"), True


class ChurnInterviewTable(tables.Table):
    interviewed_on = tables.DateColumn(verbose_name=_("Date"), format="Y-m-d")
    customer = tables.Column(verbose_name=_("Customer"), order_by=("customer__last_name", "id"))
    interviewer = tables.Column(verbose_name=_("Interviewer"), orderable=False)
    primary_reason_label = tables.Column(
        verbose_name=_("Primary reason (as recorded)"), orderable=False, empty_values=()
    )
    likelihood_to_return = tables.Column(verbose_name=_("Likelihood to return"))
    winback_outcome = tables.Column(verbose_name=_("Win-back"))
    edit = tables.Column(verbose_name="", accessor="pk", orderable=False, empty_values=())

    class Meta:
        model = ChurnInterview
        fields = ()
        sequence = (
            "interviewed_on",
            "customer",
            "interviewer",
            "primary_reason_label",
            "likelihood_to_return",
            "winback_outcome",
            "edit",
        )
        order_by = ("-interviewed_on",)
        attrs = {"class": "table"}

    def render_primary_reason_label(self, record):
        return record.primary_reason_label

    def render_edit(self, value, record):
        url = reverse("surveys:churn_interview_update", args=[value])
        return format_html('<a href="{}">{}</a>', url, _("Edit"))


class ReasonCodeTable(tables.Table):
    code = tables.Column(verbose_name=_("Code"))
    category = tables.Column(verbose_name=_("Category"))
    label_en = tables.Column(verbose_name=_("Label (English)"))
    label_ko = tables.Column(verbose_name=_("Label (Korean)"))
    is_active = tables.BooleanColumn(verbose_name=_("Active"))
    primary_uses = tables.Column(verbose_name=_("Primary uses"), attrs={"td": {"class": "num"}})
    secondary_uses = tables.Column(verbose_name=_("Secondary uses"), attrs={"td": {"class": "num"}})
    edit = tables.Column(verbose_name="", accessor="pk", orderable=False, empty_values=())

    class Meta:
        model = ReasonCode
        fields = ()
        sequence = (
            "code",
            "category",
            "label_en",
            "label_ko",
            "is_active",
            "primary_uses",
            "secondary_uses",
            "edit",
        )
        order_by = ("category", "code")
        attrs = {"class": "table"}

    def render_edit(self, value):
        if not getattr(self, "can_change", False):
            return ""
        url = reverse("surveys:reason_code_update", args=[value])
        return format_html('<a href="{}">{}</a>', url, _("Edit"))
