"""High-value accounts (top 10 % by lifetime contribution, nightly or live): assign, even out."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views import View
from django.views.generic import TemplateView
from django_tables2 import RequestConfig

from crm import selectors, services
from crm.assignments import DEFAULT_EFFORT
from crm.forms import BulkAssignForm, EvenOutApplyForm, EvenOutForm
from crm.permissions import StaffPermissionMixin
from crm.tables import BoundedLazyPaginator, HighValueTable


def _high_value_context(request, assign_form=None) -> dict:
    unassigned_only = request.GET.get("unassigned") == "1"
    source, as_of = selectors.high_value_source()
    table = HighValueTable(
        selectors.high_value_accounts(unassigned_only=unassigned_only, source=source)
    )
    RequestConfig(
        request, paginate={"paginator_class": BoundedLazyPaginator, "per_page": 50}
    ).configure(table)
    return {
        "table": table,
        "source": source,
        "as_of": as_of,
        "unassigned_only": unassigned_only,
        "assign_form": assign_form or BulkAssignForm(),
        "even_out_form": EvenOutForm(),
        "default_effort": DEFAULT_EFFORT,
        "can_assign": request.user.has_perm("crm.assign_owner"),
    }


class HighValueView(StaffPermissionMixin, TemplateView):
    permission_required = "crm.view_high_value"
    template_name = "crm/high_value.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(_high_value_context(self.request))
        return context


class BulkAssignView(StaffPermissionMixin, View):
    """Assign the selected accounts to one staff member, atomically, with a reason."""

    permission_required = ("crm.view_high_value", "crm.assign_owner")
    http_method_names = ["post"]

    def post(self, request):
        form = BulkAssignForm(request.POST)
        if form.is_valid():
            try:
                changed = services.accounts_assign(
                    customer_ids=form.cleaned_data["customers"],
                    owner=form.cleaned_data["owner"],
                    reason=form.cleaned_data["reason"],
                    by=request.user,
                )
            except ValidationError as exc:
                form.add_error(None, exc.messages)
            else:
                messages.success(request, _("%(count)d accounts assigned.") % {"count": changed})
                return HttpResponseRedirect(reverse("crm:high_value"))
        context = _high_value_context(request, assign_form=form)
        return render(request, "crm/high_value.html", context, status=400)


class EvenOutView(StaffPermissionMixin, View):
    """GET: preview the proposal (nothing changes). POST: apply the approved proposal."""

    permission_required = ("crm.view_high_value", "crm.assign_owner")
    template_name = "crm/even_out.html"

    def get(self, request):
        form = EvenOutForm(request.GET or None)
        context = {"form": form, "default_effort": DEFAULT_EFFORT}
        if form.is_valid():
            staff = list(form.cleaned_data["staff"])
            proposal = selectors.even_out_preview(
                staff=staff, unassigned_only=form.cleaned_data["unassigned_only"]
            )
            customers = selectors.customers_by_ids(proposal.assignments)
            names = {u.pk: u for u in staff}
            context.update(
                proposal=proposal,
                rows=[
                    {
                        "customer": customers[cid],
                        "to": names[sid],
                        "changes": customers[cid].owner_id != sid,
                    }
                    for cid, sid in proposal.assignments.items()
                    if cid in customers
                ],
                totals=[
                    {"staff": names[sid], "effort": total, "count": proposal.counts[sid]}
                    for sid, total in proposal.totals.items()
                ],
                apply_form=EvenOutApplyForm(
                    initial={
                        "assignments": ",".join(
                            f"{cid}:{sid}" for cid, sid in proposal.assignments.items()
                        )
                    }
                ),
            )
        status = 400 if form.is_bound and not form.is_valid() else 200
        return render(request, self.template_name, context, status=status)

    def post(self, request):
        form = EvenOutApplyForm(request.POST)
        if form.is_valid():
            try:
                changed = services.even_out_apply(
                    assignments=form.cleaned_data["assignments"],
                    reason=form.cleaned_data["reason"] or _("Even out by service effort"),
                    by=request.user,
                )
            except ValidationError as exc:
                form.add_error(None, exc.messages)
            else:
                messages.success(
                    request,
                    _("Proposal applied: %(count)d accounts changed owner.") % {"count": changed},
                )
                return HttpResponseRedirect(reverse("crm:high_value"))
        context = {
            "form": EvenOutForm(),
            "apply_errors": form.errors,
            "default_effort": DEFAULT_EFFORT,
        }
        return render(request, self.template_name, context, status=400)
