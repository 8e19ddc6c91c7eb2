"""Churn screens: the interview queue, the interview form, reason codes and the churn report.
Thin: parse input, call a selector or service, render."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import FormView, TemplateView
from django_filters.views import FilterView
from django_tables2 import LazyPaginator, RequestConfig, SingleTableMixin, SingleTableView

from crm.csv_export import csv_response
from crm.models import Customer
from crm.permissions import StaffPermissionMixin

from . import churn_selectors, churn_services
from .churn_filters import ChurnInterviewFilter, ChurnQueueFilter
from .churn_forms import (
    ChurnInterviewForm,
    ChurnReportForm,
    ReasonCodeCreateForm,
    ReasonCodeUpdateForm,
)
from .churn_tables import ChurnInterviewTable, ChurnQueueTable, ReasonCodeTable
from .models import ChurnInterview, ReasonCode


def _add_service_errors(form, error: ValidationError) -> None:
    """Show a service's ValidationError on the form: on its field where the form has one."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for name, errors in error.message_dict.items():
        form.add_error(name if name in form.fields else None, errors)


class _InvalidFormIs400:
    """A refused form answers 400 (FormView's default is 200), like every other form here."""

    def form_invalid(self, form):
        response = super().form_invalid(form)
        response.status_code = 400
        return response


class ChurnQueueView(StaffPermissionMixin, SingleTableMixin, FilterView):
    """Churned customers without an interview, biggest lost contribution first."""

    permission_required = "surveys.view_churninterview"
    template_name = "surveys/churn_queue.html"
    table_class = ChurnQueueTable
    filterset_class = ChurnQueueFilter
    paginator_class = LazyPaginator  # no COUNT(*) over a possibly large queue
    table_pagination = {"per_page": 50}

    def get_queryset(self):
        return churn_selectors.churn_queue()

    def get(self, request, *args, **kwargs):
        if request.GET.get("export") == "csv":
            return self.export_csv()
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        table = context["table"]
        # Customers without metrics come after the whole metrics-ordered queue: on its last page.
        if not table.page.has_next():
            rest = self._filtered(churn_selectors.churn_queue_without_metrics())
            rest_table = ChurnQueueTable(rest, prefix="nm-", orderable=False)
            RequestConfig(
                self.request, paginate={"per_page": 50, "paginator_class": LazyPaginator}
            ).configure(rest_table)
            context["table_without_metrics"] = rest_table
        return context

    def _filtered(self, queryset):
        filterset = self.filterset_class(self.request.GET or None, queryset=queryset)
        if not filterset.is_bound:
            return queryset
        return filterset.qs if filterset.is_valid() else queryset.none()

    def export_csv(self):
        header = [
            _("Customer id"),
            _("Customer"),
            _("Email"),
            _("Status"),
            _("Cancelled"),
            _("Last order"),
            _("Lost lifetime contribution"),
            _("Decile"),
            _("Bucket"),
            _("Owner"),
        ]
        parts = [
            self._filtered(churn_selectors.churn_queue()),
            self._filtered(churn_selectors.churn_queue_without_metrics()),
        ]
        rows = (row for part in parts for row in churn_selectors.churn_queue_csv_rows(part))
        stamp = timezone.localdate().isoformat()
        return csv_response(filename=f"churn-queue-{stamp}.csv", header=header, rows=rows)


class ChurnInterviewListView(StaffPermissionMixin, SingleTableMixin, FilterView):
    permission_required = "surveys.view_churninterview"
    template_name = "surveys/churn_interview_list.html"
    table_class = ChurnInterviewTable
    filterset_class = ChurnInterviewFilter
    paginator_class = LazyPaginator
    table_pagination = {"per_page": 50}

    def get_queryset(self):
        return churn_selectors.churn_interview_list()

    def get(self, request, *args, **kwargs):
        if request.GET.get("export") == "csv":
            return self.export_csv()
        return super().get(request, *args, **kwargs)

    def export_csv(self):
        """The filtered interviews as a streamed CSV (invalid filters export nothing)."""
        filterset = self.filterset_class(self.request.GET, queryset=self.get_queryset())
        queryset = filterset.qs if filterset.is_valid() else filterset.queryset.none()
        header = [
            _("Date"),
            _("Customer id"),
            _("First name"),
            _("Last name"),
            _("Interviewer"),
            _("Reason category"),
            _("Primary reason (as recorded)"),
            _("Competitor"),
            _("Likelihood to return"),
            _("Win-back offer"),
            _("Win-back"),
            _("Verbatim"),
        ]
        rows = queryset.values_list(
            "interviewed_on",
            "customer_id",
            "customer__first_name",
            "customer__last_name",
            "interviewer__username",
            "primary_reason__category",
            "primary_reason_label_en",
            "competitor",
            "likelihood_to_return",
            "winback_offer",
            "winback_outcome",
            "verbatim",
        ).iterator(chunk_size=2000)
        stamp = timezone.localdate().isoformat()
        return csv_response(filename=f"churn-interviews-{stamp}.csv", header=header, rows=rows)


class ChurnInterviewCreateView(StaffPermissionMixin, _InvalidFormIs400, FormView):
    permission_required = ("surveys.add_churninterview",)
    template_name = "surveys/churn_interview_form.html"
    form_class = ChurnInterviewForm

    @cached_property
    def customer(self) -> Customer:  # read after the permission check, never before
        return get_object_or_404(Customer, pk=self.kwargs["customer_id"])

    def get(self, request, *args, **kwargs):
        existing = ChurnInterview.objects.filter(customer=self.customer).values("pk").first()
        if existing and request.user.has_perm("surveys.change_churninterview"):
            messages.info(request, _("This customer already has a churn interview."))
            return HttpResponseRedirect(
                reverse("surveys:churn_interview_update", args=[existing["pk"]])
            )
        return super().get(request, *args, **kwargs)

    def get_initial(self):
        return {
            "interviewer": self.request.user.pk,
            "interviewed_on": timezone.localdate(),
        }

    def get_context_data(self, **kwargs):
        return super().get_context_data(customer=self.customer, interview=None, **kwargs)

    def form_valid(self, form):
        try:
            churn_services.churn_interview_record(
                customer=self.customer, recorded_by=self.request.user, **form.cleaned_data
            )
        except ValidationError as error:
            _add_service_errors(form, error)
            return self.form_invalid(form)
        messages.success(self.request, _("Churn interview recorded."))
        return HttpResponseRedirect(reverse("surveys:churn_queue"))


class ChurnInterviewUpdateView(StaffPermissionMixin, _InvalidFormIs400, FormView):
    permission_required = ("surveys.change_churninterview",)
    template_name = "surveys/churn_interview_form.html"
    form_class = ChurnInterviewForm

    @cached_property
    def interview(self) -> ChurnInterview:
        try:
            return churn_selectors.churn_interview_get(pk=self.kwargs["pk"])
        except ChurnInterview.DoesNotExist:
            raise Http404 from None

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "interview": self.interview}

    def get_initial(self):
        interview = self.interview
        initial = {name: getattr(interview, name) for name in churn_services.UPDATABLE_FIELDS}
        initial["interviewer"] = interview.interviewer_id
        initial["primary_reason"] = interview.primary_reason_id
        initial["secondary_reasons"] = [
            link.reason_id for link in interview.secondary_reason_links.all()
        ]
        return initial

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            customer=self.interview.customer, interview=self.interview, **kwargs
        )

    def form_valid(self, form):
        try:
            churn_services.churn_interview_update(interview=self.interview, **form.cleaned_data)
        except ValidationError as error:
            _add_service_errors(form, error)
            return self.form_invalid(form)
        messages.success(self.request, _("Churn interview saved."))
        return HttpResponseRedirect(reverse("surveys:churn_interview_list"))


class ReasonCodeListView(StaffPermissionMixin, SingleTableView):
    permission_required = "surveys.view_reasoncode"
    template_name = "surveys/churn_reason_list.html"
    table_class = ReasonCodeTable
    table_pagination = False

    def get_queryset(self):
        return churn_selectors.reason_code_list()

    def get(self, request, *args, **kwargs):
        if request.GET.get("export") == "csv":
            return self.export_csv()
        return super().get(request, *args, **kwargs)

    def export_csv(self):
        """Every reason code with its uses, in the selector's order (active first)."""
        header = [
            _("Code"),
            _("Category"),
            _("Label (English)"),
            _("Label (Korean)"),
            _("Active"),
            _("Primary uses"),
            _("Secondary uses"),
        ]
        rows = (
            (
                r.code,
                r.get_category_display(),
                r.label_en,
                r.label_ko,
                _("yes") if r.is_active else _("no"),
                r.primary_uses,
                r.secondary_uses,
            )
            for r in self.get_queryset().iterator(chunk_size=2000)
        )
        return csv_response(filename="churn-reason-codes.csv", header=header, rows=rows)

    def get_table(self, **kwargs):
        table = super().get_table(**kwargs)
        table.can_change = self.request.user.has_perm("surveys.change_reasoncode")
        return table


class ReasonCodeCreateView(StaffPermissionMixin, _InvalidFormIs400, FormView):
    permission_required = "surveys.add_reasoncode"
    template_name = "surveys/churn_reason_form.html"
    form_class = ReasonCodeCreateForm
    extra_context = {"title": gettext_lazy("New reason code")}

    def form_valid(self, form):
        try:
            churn_services.reason_code_create(**form.cleaned_data)
        except ValidationError as error:
            _add_service_errors(form, error)
            return self.form_invalid(form)
        messages.success(self.request, _("Reason code created."))
        return HttpResponseRedirect(reverse("surveys:reason_code_list"))


class ReasonCodeUpdateView(StaffPermissionMixin, _InvalidFormIs400, FormView):
    permission_required = "surveys.change_reasoncode"
    template_name = "surveys/churn_reason_form.html"
    form_class = ReasonCodeUpdateForm

    @cached_property
    def reason(self) -> ReasonCode:
        return get_object_or_404(ReasonCode, pk=self.kwargs["pk"])

    def get_form_kwargs(self):
        # The form works on a copy: the service re-reads and locks the row before writing.
        copy = ReasonCode.objects.get(pk=self.reason.pk)
        return {**super().get_form_kwargs(), "instance": copy}

    def get_context_data(self, **kwargs):
        title = _("Reason code “%(code)s”") % {"code": self.reason.code}
        return super().get_context_data(title=title, reason=self.reason, **kwargs)

    def form_valid(self, form):
        try:
            churn_services.reason_code_update(reason=self.reason, **form.cleaned_data)
        except ValidationError as error:
            _add_service_errors(form, error)
            return self.form_invalid(form)
        messages.success(self.request, _("Reason code saved."))
        return HttpResponseRedirect(reverse("surveys:reason_code_list"))


CHURN_REPORT_TABLES = ("reasons", "categories", "cross", "winback")


class ChurnReportView(StaffPermissionMixin, TemplateView):
    """The churn report; ?export=csv&table=reasons|categories|cross|winback downloads one of
    its tables for the same dates (invalid dates or an unknown table: 400)."""

    permission_required = "surveys.view_churn_report"
    template_name = "surveys/churn_report.html"

    def get(self, request, *args, **kwargs):
        if request.GET.get("export") == "csv":
            return self.export_csv()
        return super().get(request, *args, **kwargs)

    def export_csv(self):
        table = self.request.GET.get("table") or "reasons"
        if table not in CHURN_REPORT_TABLES:
            message = _("table: unknown value “%(value)s”; use one of %(choices)s.") % {
                "value": table[:50],
                "choices": ", ".join(CHURN_REPORT_TABLES),
            }
            return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
        form = ChurnReportForm(self.request.GET)
        if not form.is_valid():
            message = "; ".join(
                f"{name}: {' '.join(errors)}" for name, errors in form.errors.items()
            )
            return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
        report = churn_selectors.churn_report(
            date_from=form.cleaned_data.get("date_from"), date_to=form.cleaned_data.get("date_to")
        )
        header, rows = getattr(self, f"_{table}_table")(report)
        return csv_response(filename=f"churn-report-{table}.csv", header=header, rows=rows)

    @staticmethod
    def _reasons_table(report):
        header = [
            _("Reason code"),
            _("Reason (current wording)"),
            _("Category"),
            _("Active"),
            _("As primary reason"),
            _("As secondary reason"),
            _("Lost lifetime contribution"),
            _("Average likelihood to return"),
        ]
        rows = [
            (
                r["reason"].code,
                r["reason"].label,
                r["category_label"],
                _("yes") if r["reason"].is_active else _("no"),
                r["interviews"],
                r["secondary"],
                r["lost_contribution"],
                None if r["avg_likelihood"] is None else round(r["avg_likelihood"], 1),
            )
            for r in report.by_reason
        ]
        return header, rows

    @staticmethod
    def _categories_table(report):
        header = [_("Category"), _("Interviews"), _("Share (%)"), _("Lost lifetime contribution")]
        rows = [
            (r["label"], r["interviews"], r["share"], r["lost_contribution"])
            for r in report.by_category
        ]
        return header, rows

    @staticmethod
    def _cross_table(report):
        header = [_("Category")]
        header += [b["name"] or _("Unsegmented") for b in report.buckets]
        header.append(_("Total"))
        rows = [[r["label"], *r["cells"], r["total"]] for r in report.cross]
        return header, rows

    @staticmethod
    def _winback_table(report):
        header = [_("Outcome"), _("Interviews"), _("Share (%)")]
        rows = [(r["label"], r["interviews"], r["share"]) for r in report.winback]
        return header, rows

    def get_context_data(self, **kwargs):
        form = ChurnReportForm(self.request.GET or None)
        dates = form.cleaned_data if form.is_bound and form.is_valid() else {}
        report = churn_selectors.churn_report(
            date_from=dates.get("date_from"), date_to=dates.get("date_to")
        )
        chart = {
            "months": report.months,
            "series": [{"label": s["label"], "data": s["counts"]} for s in report.month_series],
        }
        return super().get_context_data(form=form, report=report, chart=chart, **kwargs)
