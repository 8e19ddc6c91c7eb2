"""My work: the signed-in staff member's follow-up queue (and, for managers, the unassigned
queue), in the order of domain.md "The support queue", and their accounts.

The queue order comes from segments (bucket ROI of the latest snapshot, value decile,
influence, age): a screen combining apps may call the selectors of apps above crm, so the
segments import lives here in the view layer, never in crm's models, services or selectors.
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import View
from django.views.generic import TemplateView

from crm import selectors, services
from crm.csv_export import csv_response
from crm.forms import FollowUpDoneForm
from crm.models import FollowUp
from crm.permissions import StaffPermissionMixin

ACCOUNTS_SHOWN = 100
QUEUE_SHOWN = 200

MINE = "mine"
UNASSIGNED = "unassigned"
QUEUES = {MINE: gettext_lazy("My follow-ups"), UNASSIGNED: gettext_lazy("Unassigned queue")}
# Managers (and administrators) hand out work, so they see and take from the unassigned queue.
UNASSIGNED_PERMISSION = "crm.assign_owner"


class BadQueue(ValueError):
    pass


def _queue_name(request, value: str | None) -> str:
    """The requested queue: "mine" (default) or "unassigned" (managers only).

    Raises BadQueue for an unknown name and PermissionDenied for the unassigned queue without
    the permission.
    """
    name = (value or MINE).strip()
    if name not in QUEUES:
        raise BadQueue(
            _("queue: unknown value “%(value)s”; use “mine” or “unassigned”.")
            % {"value": name[:50]}
        )
    if name == UNASSIGNED and not request.user.has_perm(UNASSIGNED_PERMISSION):
        raise PermissionDenied
    return name


def _queue(request, name: str) -> list[FollowUp]:
    from segments.selectors import follow_up_queue, follow_up_reason

    if name == UNASSIGNED:
        qs = follow_up_queue(request.user, include_unassigned=True).filter(assigned_to__isnull=True)
    else:
        qs = follow_up_queue(request.user)
    rows = list(qs[: QUEUE_SHOWN + 1])
    for follow_up in rows:
        follow_up.queue_reason = follow_up_reason(follow_up)  # words only, no query
    return rows


def _my_context(request, queue: str = MINE, done_form=None, done_id=None) -> dict:
    from segments.selectors import FOLLOW_UP_QUEUE_ORDER

    accounts = list(selectors.my_accounts(user=request.user)[: ACCOUNTS_SHOWN + 1])
    follow_ups = _queue(request, queue)
    can_unassigned = request.user.has_perm(UNASSIGNED_PERMISSION)
    return {
        "queue": queue,
        "tabs": [(name, label) for name, label in QUEUES.items() if name == MINE or can_unassigned],
        "follow_ups": follow_ups[:QUEUE_SHOWN],
        "more_follow_ups": len(follow_ups) > QUEUE_SHOWN,
        "queue_order": FOLLOW_UP_QUEUE_ORDER,
        "accounts": accounts[:ACCOUNTS_SHOWN],
        "more_accounts": len(accounts) > ACCOUNTS_SHOWN,
        "today": selectors.today(),
        "done_form": done_form,
        "done_id": done_id,
    }


class MyWorkView(StaffPermissionMixin, TemplateView):
    """GET /my/?queue=mine|unassigned. An unknown queue is 400; the unassigned queue without
    the managers' permission is 403."""

    permission_required = "crm.view_customer"
    template_name = "crm/my_work.html"

    def get(self, request, *args, **kwargs):
        try:
            queue = _queue_name(request, request.GET.get("queue"))
        except BadQueue as exc:
            context = _my_context(request)
            context["queue_error"] = str(exc)
            return render(request, self.template_name, context, status=400)
        if request.GET.get("export") == "csv":
            if request.GET.get("table") == "accounts":
                return _accounts_csv(request)
            return _queue_csv(request, queue)
        context = self.get_context_data(**kwargs)
        context.update(_my_context(request, queue=queue))
        return self.render_to_response(context)


def _queue_csv(request, queue: str):
    """The whole queue (not only the first QUEUE_SHOWN rows), in the page's order; the reason
    comes from the row's annotations, so no query per row."""
    from segments.selectors import follow_up_queue, follow_up_reason

    if queue == UNASSIGNED:
        qs = follow_up_queue(request.user, include_unassigned=True).filter(assigned_to__isnull=True)
    else:
        qs = follow_up_queue(request.user)
    rows = (
        (
            f.pk,
            f.customer_id,
            f.customer.full_name,
            f.bucket_name or "",
            f.reason,
            f.get_source_display(),
            f.due_on.isoformat(),
            follow_up_reason(f),
        )
        for f in qs.iterator(chunk_size=2000)
    )
    header = [
        _("Follow-up id"),
        _("Customer id"),
        _("Customer"),
        _("Bucket"),
        _("Follow-up"),
        _("Source"),
        _("Due"),
        _("Why here"),
    ]
    return csv_response(filename=f"my-follow-ups-{queue}.csv", header=header, rows=rows)


def _accounts_csv(request):
    """All accounts the user owns, in the page's order (effort first)."""
    qs = selectors.my_accounts(user=request.user).values_list(
        "pk",
        "first_name",
        "last_name",
        "email",
        "status",
        "service_effort",
        "influence",
        "metrics__value_decile",
    )
    header = [
        _("Customer id"),
        _("First name"),
        _("Last name"),
        _("Email"),
        _("Status"),
        _("Effort"),
        _("Influence"),
        _("Decile"),
    ]
    return csv_response(
        filename="my-accounts.csv", header=header, rows=qs.iterator(chunk_size=2000)
    )


class FollowUpDoneView(StaffPermissionMixin, View):
    permission_required = "crm.change_followup"
    http_method_names = ["post"]

    def post(self, request, pk):
        follow_up = get_object_or_404(FollowUp, pk=pk)
        try:
            queue = _queue_name(request, request.POST.get("queue"))
        except BadQueue:
            queue = MINE  # only decides where to go back to
        form = FollowUpDoneForm(request.POST)
        if form.is_valid():
            try:
                services.follow_up_complete(
                    follow_up=follow_up, by=request.user, outcome=form.cleaned_data["outcome"]
                )
            except ValidationError as exc:
                form.add_error(None, exc.messages)
            else:
                messages.success(request, _("Follow-up done."))
                url = reverse("crm:my_work")
                if queue != MINE:
                    url += f"?queue={queue}"
                return HttpResponseRedirect(url)
        context = _my_context(request, queue=queue, done_form=form, done_id=follow_up.pk)
        return render(request, "crm/my_work.html", context, status=400)
