"""ROI screens: the dashboard (table, charts, last run, recalculate), negative-contribution
customers (table + streamed CSV) and acquisition cohorts. Thin: selectors in, templates out."""

import logging
from decimal import ROUND_HALF_UP, Decimal

import django_tables2 as tables
from django.contrib import messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import View
from django.views.generic import TemplateView
from django_tables2 import SingleTableMixin
from django_tables2.paginators import LazyPaginator
from kombu.exceptions import OperationalError as KombuOperationalError

from crm.csv_export import csv_response
from crm.models import Customer
from crm.permissions import StaffPermissionMixin

from . import selectors
from .models import RoiSnapshot

logger = logging.getLogger(__name__)

ROI_PERMISSION = "segments.view_roi"


def _pct(value):
    return "" if value is None else f"{value * 100:.1f} %"


def _money(value):
    return "" if value is None else f"{value:,.2f}"


class RoiSnapshotTable(tables.Table):
    bucket = tables.Column(accessor="bucket_name", verbose_name=gettext_lazy("Bucket"))
    share_of_total = tables.Column(verbose_name=gettext_lazy("Share of contribution"))
    payback_median_days = tables.Column(verbose_name=gettext_lazy("Median payback (days)"))
    payback_share = tables.Column(verbose_name=gettext_lazy("Paid back"))

    class Meta:
        model = RoiSnapshot
        fields = (
            "customers",
            "revenue",
            "margin",
            "cost_to_serve",
            "contribution",
            "roi",
            "contribution_per_customer",
            "avg_effort",
            "avg_influence",
            "nps",
            "ltv_cac",
            "churn_rate",
        )
        sequence = (
            "bucket",
            "customers",
            "revenue",
            "margin",
            "cost_to_serve",
            "contribution",
            "roi",
            "contribution_per_customer",
            "share_of_total",
            "avg_effort",
            "avg_influence",
            "nps",
            "ltv_cac",
            "payback_median_days",
            "payback_share",
            "churn_rate",
        )
        order_by = ()
        orderable = False
        empty_text = gettext_lazy("No snapshot yet: run the ROI job.")
        attrs = {"class": "table", "id": "roi-table"}

    def render_bucket(self, record):
        if record.bucket_id is None:
            return _("Unsegmented")
        return format_html(
            '<span class="swatch" style="background:{}"></span><a href="{}">{}</a>',
            record.bucket.colour,
            reverse("segments:bucket_detail", args=[record.bucket_id]),
            record.bucket.name,
        )

    def render_revenue(self, value):
        return _money(value)

    render_margin = render_cost_to_serve = render_contribution = render_revenue
    render_contribution_per_customer = render_revenue

    def render_roi(self, value):
        return f"{value:.2f}"

    render_ltv_cac = render_roi

    def render_nps(self, value):
        # A whole number, rounded half up, as on the survey screens.
        return str(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))

    def render_share_of_total(self, value):
        return _pct(value)

    render_payback_share = render_churn_rate = render_share_of_total


ROI_CSV_COLUMNS = [
    ("bucket_id", gettext_lazy("Bucket id")),
    ("bucket_name", gettext_lazy("Bucket")),
    ("customers", gettext_lazy("Customers")),
    ("revenue", gettext_lazy("Revenue")),
    ("margin", gettext_lazy("Margin")),
    ("cost_to_serve", gettext_lazy("Cost to serve")),
    ("contribution", gettext_lazy("Contribution")),
    ("roi", gettext_lazy("ROI")),
    ("contribution_per_customer", gettext_lazy("Contribution per customer")),
    ("share_of_total", gettext_lazy("Share of contribution")),
    ("avg_effort", gettext_lazy("Average effort")),
    ("avg_influence", gettext_lazy("Average influence")),
    ("nps", gettext_lazy("NPS")),
    ("ltv_cac", gettext_lazy("LTV/CAC")),
    ("payback_median_days", gettext_lazy("Median payback (days)")),
    ("payback_share", gettext_lazy("Paid back")),
    ("churn_rate", gettext_lazy("Churn rate")),
]


class RoiDashboardView(StaffPermissionMixin, TemplateView):
    """The latest snapshot's table, charts and last run; ?export=csv streams the table."""

    permission_required = ROI_PERMISSION
    template_name = "segments/roi_dashboard.html"

    def get(self, request, *args, **kwargs):
        if request.GET.get("export") == "csv":
            return self.export_csv()
        return super().get(request, *args, **kwargs)

    def export_csv(self):
        latest = selectors.latest_snapshot_date()
        snapshots = list(selectors.roi_snapshots(on=latest)) if latest else []
        unsegmented = _("Unsegmented")
        rows = (
            [
                (getattr(r, name) if name != "bucket_name" else (r.bucket_name or unsegmented))
                for name, _label in ROI_CSV_COLUMNS
            ]
            for r in snapshots
        )
        suffix = latest.isoformat() if latest else "none"
        return csv_response(
            filename=f"roi-{suffix}.csv",
            header=[label for _name, label in ROI_CSV_COLUMNS],
            rows=rows,
        )

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        latest = selectors.latest_snapshot_date()
        rows = list(selectors.roi_snapshots(on=latest)) if latest else []
        ctx.update(
            snapshot_date=latest,
            table=RoiSnapshotTable(rows),
            totals=selectors.roi_totals(rows),
            bars={
                "labels": [r.bucket_name or _("Unsegmented") for r in rows],
                "contribution": [float(r.contribution) for r in rows],
                "cost_to_serve": [float(r.cost_to_serve) for r in rows],
            },
            trend=selectors.roi_trend(),
            whale=selectors.latest_reports().get("whale", []),
            last_run=selectors.latest_job_run(),
        )
        return ctx


class RoiRecalculateView(StaffPermissionMixin, View):
    """POST: queue the ROI job now (managers). Refused while a run is in progress."""

    permission_required = (ROI_PERMISSION, "segments.change_bucket")
    http_method_names = ["post"]

    def post(self, request):
        from .tasks import roi_recalculate_task

        if selectors.job_running():
            messages.warning(request, _("An ROI run is already in progress; try again later."))
            return HttpResponseRedirect(reverse("segments:roi_dashboard"))
        full = request.POST.get("full") == "1"
        try:
            # No transaction is open here (no ATOMIC_REQUESTS), so this is after commit.
            roi_recalculate_task.delay(full=full)
        except KombuOperationalError:
            logger.exception("could not queue the ROI job")
            messages.error(
                request, _("The task queue cannot be reached; the recalculation was not queued.")
            )
        else:
            messages.success(
                request, _("ROI recalculation queued; refresh this page in a few minutes.")
            )
        return HttpResponseRedirect(reverse("segments:roi_dashboard"))


class NegativeTable(tables.Table):
    name = tables.LinkColumn(
        "crm:customer_detail",
        args=[tables.A("pk")],
        accessor="full_name",
        order_by=("last_name", "first_name"),
        verbose_name=gettext_lazy("Customer"),
    )
    bucket = tables.Column(
        accessor="current_membership__bucket__name",
        verbose_name=gettext_lazy("Bucket"),
        default=gettext_lazy("Unsegmented"),
        orderable=False,
    )
    margin = tables.Column(
        accessor="metrics__margin_window", verbose_name=gettext_lazy("Margin (window)")
    )
    cost_to_serve = tables.Column(
        accessor="metrics__cost_to_serve_window",
        verbose_name=gettext_lazy("Cost to serve (window)"),
    )
    contribution = tables.Column(
        accessor="metrics__contribution_window",
        verbose_name=gettext_lazy("Contribution (window)"),
    )
    minutes = tables.Column(
        accessor="metrics__minutes_window", verbose_name=gettext_lazy("Minutes served")
    )
    orders = tables.Column(accessor="metrics__orders_window", verbose_name=gettext_lazy("Orders"))
    owner = tables.Column(verbose_name=gettext_lazy("Owner"), default="—", orderable=False)

    class Meta:
        model = Customer
        fields = ("status",)
        sequence = (
            "name",
            "bucket",
            "margin",
            "cost_to_serve",
            "contribution",
            "minutes",
            "orders",
            "status",
            "owner",
        )
        order_by = ("contribution",)
        empty_text = gettext_lazy("No customer costs more to serve than they bring in.")

    def render_margin(self, value):
        return _money(value)

    render_cost_to_serve = render_contribution = render_margin


NEGATIVE_CSV_COLUMNS = [
    ("id", gettext_lazy("Customer id")),
    ("first_name", gettext_lazy("First name")),
    ("last_name", gettext_lazy("Last name")),
    ("email", gettext_lazy("Email")),
    ("current_membership__bucket__name", gettext_lazy("Bucket")),
    ("metrics__margin_window", gettext_lazy("Margin (window)")),
    ("metrics__cost_to_serve_window", gettext_lazy("Cost to serve (window)")),
    ("metrics__contribution_window", gettext_lazy("Contribution (window)")),
    ("metrics__minutes_window", gettext_lazy("Minutes served")),
    ("metrics__orders_window", gettext_lazy("Orders")),
    ("status", gettext_lazy("Status")),
    ("owner__username", gettext_lazy("Owner")),
]


class NegativeContributionView(StaffPermissionMixin, SingleTableMixin, TemplateView):
    """Customers whose cost to serve exceeds their margin in the window; ?export=csv streams
    them all."""

    permission_required = ROI_PERMISSION
    template_name = "segments/negative.html"
    table_class = NegativeTable
    paginator_class = LazyPaginator
    table_pagination = {"per_page": 50}

    def get_table_data(self):
        return selectors.negative_contribution_customers()

    def get(self, request, *args, **kwargs):
        if request.GET.get("export") == "csv":
            return self.export_csv()
        return super().get(request, *args, **kwargs)

    def export_csv(self):
        rows = selectors.negative_contribution_customers().values_list(
            *[name for name, _label in NEGATIVE_CSV_COLUMNS]
        )
        return csv_response(
            filename="negative-contribution.csv",
            header=[label for _name, label in NEGATIVE_CSV_COLUMNS],
            rows=rows.iterator(chunk_size=2000),
        )


class CohortsView(StaffPermissionMixin, TemplateView):
    """The acquisition-cohort triangle of the latest run; ?export=csv downloads it."""

    permission_required = ROI_PERMISSION
    template_name = "segments/cohorts.html"

    def get(self, request, *args, **kwargs):
        if request.GET.get("export") == "csv":
            return self.export_csv()
        return super().get(request, *args, **kwargs)

    def export_csv(self):
        triangle = selectors.latest_reports().get("cohorts") or {"offsets": [], "rows": []}
        offsets = triangle.get("offsets") or []
        header = [_("Cohort"), _("Customers"), _("Avg. CAC"), _("Recovered in month")]
        header += [_("Month %(k)s") % {"k": k} for k in offsets]
        rows = (
            [row.get("cohort"), row.get("customers"), row.get("cac"), row.get("recovered")]
            + list(row.get("cells") or [])
            for row in triangle.get("rows") or []
        )
        return csv_response(filename="cohorts.csv", header=header, rows=rows)

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["triangle"] = selectors.latest_reports().get("cohorts") or {"offsets": [], "rows": []}
        return ctx
