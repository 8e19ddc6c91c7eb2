"""Customer list (search, filters, CSV) and the customer page with its inline actions."""

from django.apps import apps
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import View
from django.views.generic import TemplateView
from django_filters.views import FilterView
from django_tables2 import SingleTableMixin

from crm import selectors, services
from crm.csv_export import csv_response
from crm.filters import CustomerFilter
from crm.forms import (
    CancelForm,
    EffortForm,
    InfluenceOverrideForm,
    InteractionForm,
    OwnerAssignForm,
    SocialProfileForm,
)
from crm.models import Customer, SocialProfile
from crm.permissions import StaffPermissionMixin
from crm.tables import BoundedLazyPaginator, CustomerTable

CSV_COLUMNS = [
    ("id", gettext_lazy("id")),
    ("first_name", gettext_lazy("first name")),
    ("last_name", gettext_lazy("last name")),
    ("email", gettext_lazy("email")),
    ("phone", gettext_lazy("phone")),
    ("city", gettext_lazy("city")),
    ("status", gettext_lazy("status")),
    ("owner__username", gettext_lazy("owner")),
    ("service_effort", gettext_lazy("service effort")),
    ("influence", gettext_lazy("influence")),
    ("metrics__buyer_type", gettext_lazy("buyer type")),
    ("metrics__value_decile", gettext_lazy("value decile")),
    ("metrics__preferred_channel", gettext_lazy("preferred channel")),
]
BUCKET_CSV_COLUMN = ("current_membership__bucket__name", gettext_lazy("bucket"))


def _with_buckets() -> bool:
    """The bucket filter and column need the segments app (crm does not depend on it)."""
    return apps.is_installed("segments")


class CustomerListView(StaffPermissionMixin, SingleTableMixin, FilterView):
    """Search and filter customers; ?export=csv streams every filtered row."""

    permission_required = "crm.view_customer"
    template_name = "crm/customer_list.html"
    table_class = CustomerTable
    filterset_class = CustomerFilter
    paginator_class = BoundedLazyPaginator  # no COUNT(*), bounded depth, deferred joins
    table_pagination = {"per_page": 50}

    def get_queryset(self):
        qs = selectors.customer_list(user=self.request.user)
        if _with_buckets():
            # segments' current-membership row (one per customer) and its bucket, joined.
            qs = qs.select_related("current_membership__bucket")
        return qs

    def get_table_kwargs(self):
        return {"show_bucket": _with_buckets()}

    def get_context_data(self, **kwargs):
        filterset = self.filterset
        data = filterset.form.cleaned_data if filterset.is_bound else {}
        filtered = any(value not in (None, "", [], ()) for value in data.values())
        count = selectors.list_count(qs=self.object_list, filtered=filtered)
        if filtered and count.kind == "exact":
            # Few matches: page over their ids. Otherwise "ORDER BY id LIMIT 51" may walk the
            # primary key through a million rows looking for a rare search match.
            self.object_list = self.object_list.filter(pk__in=count.ids)
        context = super().get_context_data(**kwargs)
        context["list_count"] = count
        context["paginator"] = context["table"].paginator
        return context

    def get(self, request, *args, **kwargs):
        if request.GET.get("export") == "csv":
            return self.export_csv()
        return super().get(request, *args, **kwargs)

    def export_csv(self):
        filterset = self.get_filterset(self.get_filterset_class())
        qs = filterset.qs if filterset.is_valid() else filterset.queryset.none()
        table = self.table_class(qs)
        # The page's sort, limited to sortable columns (anything else is ignored, as on the page).
        order_by = [
            key
            for key in self.request.GET.getlist("sort")
            if key.lstrip("-") in table.columns and table.columns[key.lstrip("-")].orderable
        ]
        if order_by:
            table.order_by = order_by
        columns = [*CSV_COLUMNS, BUCKET_CSV_COLUMN] if _with_buckets() else CSV_COLUMNS
        rows = table.data.data.values_list(*[name for name, _label in columns])
        return csv_response(
            filename="customers.csv",
            header=[label for _name, label in columns],
            rows=rows.iterator(chunk_size=2000),
        )


def _customer_or_404(customer_id: int) -> Customer:
    try:
        return selectors.customer_get(customer_id=customer_id)
    except Customer.DoesNotExist:
        raise Http404(_("No such customer."))


def detail_context(request, customer: Customer, **forms) -> dict:
    """The customer page's context; bound forms with errors replace the blank ones."""
    detail = selectors.customer_detail(customer=customer)
    context = {
        "customer": customer,
        "detail": detail,
        "metrics": getattr(customer, "metrics", None) if _has_metrics(customer) else None,
        "effort_form": EffortForm(initial={"effort": customer.service_effort}),
        "influence_form": InfluenceOverrideForm(
            initial={
                "value": customer.influence_override,
                "reason": customer.influence_override_reason,
            }
        ),
        "social_form": SocialProfileForm(),
        "interaction_form": InteractionForm(),
        "cancel_form": CancelForm(),
        "owner_form": OwnerAssignForm(initial={"owner": customer.owner_id}),
        "edit_profile_id": None,
    }
    # Bucket, survey and churn panels: selectors of the apps above crm (see panels.py).
    from crm.views.panels import customer_panels

    context.update(customer_panels(customer=customer, user=request.user))
    context.update(forms)
    return context


def _has_metrics(customer: Customer) -> bool:
    try:
        customer.metrics  # noqa: B018  (joined by select_related; no query)
    except Customer.metrics.RelatedObjectDoesNotExist:
        return False
    return True


class CustomerDetailView(StaffPermissionMixin, TemplateView):
    permission_required = "crm.view_customer"
    template_name = "crm/customer_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(detail_context(self.request, _customer_or_404(kwargs["pk"])))
        return context


class CustomerActionView(StaffPermissionMixin, View):
    """POST-only action on one customer: validate the form, call the service, redirect back.

    Bad input re-renders the customer page with the errors, status 400, nothing saved.
    """

    http_method_names = ["post"]
    form_class = None
    form_name = ""
    success_message = ""

    def perform(self, form, customer):  # pragma: no cover - overridden
        raise NotImplementedError

    def post(self, request, pk, **kwargs):
        self.kwargs = {"pk": pk, **kwargs}
        customer = _customer_or_404(pk)
        form = self.form_class(request.POST)
        if form.is_valid():
            try:
                self.perform(form, customer)
            except ValidationError as exc:
                _add_errors(form, exc)
            else:
                if self.success_message:
                    messages.success(request, self.success_message)
                return self.success(customer)
        return self.invalid(form, customer)

    def success(self, customer):
        return HttpResponseRedirect(reverse("crm:customer_detail", args=[customer.pk]))

    def invalid(self, form, customer):
        context = detail_context(self.request, customer, **{self.form_name: form})
        return render(self.request, "crm/customer_detail.html", context, status=400)


def _add_errors(form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc)


class EffortRateView(CustomerActionView):
    permission_required = "crm.change_customer"
    form_class = EffortForm
    form_name = "effort_form"
    success_message = gettext_lazy("Service effort saved.")

    def perform(self, form, customer):
        services.effort_rate(
            customer=customer,
            effort=form.cleaned_data["effort"],
            reason=form.cleaned_data["reason"],
            by=self.request.user,
        )


class InfluenceOverrideView(CustomerActionView):
    permission_required = ("crm.change_customer", "crm.override_influence")
    form_class = InfluenceOverrideForm
    form_name = "influence_form"
    success_message = gettext_lazy("Influence override saved.")

    def perform(self, form, customer):
        services.influence_override_set(
            customer=customer,
            value=form.cleaned_data["value"],
            reason=form.cleaned_data["reason"],
            by=self.request.user,
        )


class SocialProfileAddView(CustomerActionView):
    permission_required = "crm.add_socialprofile"
    form_class = SocialProfileForm
    form_name = "social_form"
    success_message = gettext_lazy("Social profile saved; influence recomputed.")

    def get_profile(self, customer):
        return None

    def perform(self, form, customer):
        services.social_profile_save(
            customer=customer, profile=self.get_profile(customer), **form.cleaned_data
        )


class SocialProfileEditView(SocialProfileAddView):
    permission_required = "crm.change_socialprofile"
    form_name = "social_edit_form"

    def get_profile(self, customer):
        return get_object_or_404(SocialProfile, pk=self.kwargs["profile_id"], customer=customer)

    def invalid(self, form, customer):
        context = detail_context(
            self.request,
            customer,
            social_edit_form=form,
            edit_profile_id=self.kwargs["profile_id"],
        )
        return render(self.request, "crm/customer_detail.html", context, status=400)


class SocialProfileDeleteView(StaffPermissionMixin, View):
    permission_required = "crm.delete_socialprofile"
    http_method_names = ["post"]

    def post(self, request, pk, profile_id):
        profile = get_object_or_404(SocialProfile, pk=profile_id, customer_id=pk)
        services.social_profile_delete(profile=profile)
        messages.success(request, _("Social profile removed; influence recomputed."))
        return HttpResponseRedirect(reverse("crm:customer_detail", args=[pk]))


class InteractionLogView(CustomerActionView):
    """Log an interaction. With htmx the panel (form + timeline) is swapped in place."""

    permission_required = "crm.add_interaction"
    form_class = InteractionForm
    form_name = "interaction_form"

    def perform(self, form, customer):
        services.interaction_log(customer=customer, staff=self.request.user, **form.cleaned_data)

    def _is_htmx(self):
        return self.request.headers.get("HX-Request") == "true"

    def _panel(self, customer, form, saved):
        context = {
            "customer": customer,
            "interaction_form": form,
            "interactions": selectors.customer_interactions(customer=customer),
            "saved": saved,
        }
        return render(self.request, "crm/_interaction_panel.html", context)

    def success(self, customer):
        if self._is_htmx():
            return self._panel(customer, InteractionForm(), saved=True)
        messages.success(self.request, _("Interaction logged."))
        return super().success(customer)

    def invalid(self, form, customer):
        if self._is_htmx():
            # 200 so that htmx swaps the errors in; nothing was saved.
            return self._panel(customer, form, saved=False)
        return super().invalid(form, customer)


class CustomerCancelView(CustomerActionView):
    permission_required = "crm.change_customer"
    form_class = CancelForm
    form_name = "cancel_form"
    success_message = gettext_lazy("Customer marked cancelled (churned).")

    def perform(self, form, customer):
        services.customer_cancel(
            customer=customer, by=self.request.user, reason=form.cleaned_data["reason"]
        )


class OwnerAssignView(CustomerActionView):
    permission_required = ("crm.change_customer", "crm.assign_owner")
    form_class = OwnerAssignForm
    form_name = "owner_form"
    success_message = gettext_lazy("Owner saved.")

    def perform(self, form, customer):
        services.owner_assign(
            customer=customer,
            owner=form.cleaned_data["owner"],
            reason=form.cleaned_data["reason"],
            by=self.request.user,
        )
