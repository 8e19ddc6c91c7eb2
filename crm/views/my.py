"""My work: the signed-in staff member's accounts and follow-ups due."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views import View
from django.views.generic import TemplateView

from crm import selectors, services
from crm.forms import FollowUpDoneForm
from crm.models import FollowUp
from crm.permissions import StaffPermissionMixin

ACCOUNTS_SHOWN = 100


def _my_context(request, done_form=None, done_id=None) -> dict:
    accounts = list(selectors.my_accounts(user=request.user)[: ACCOUNTS_SHOWN + 1])
    return {
        "follow_ups": selectors.my_follow_ups(user=request.user)[:200],
        "accounts": accounts[:ACCOUNTS_SHOWN],
        "more_accounts": len(accounts) > ACCOUNTS_SHOWN,
        "today": selectors.today(),
        "done_form": done_form,
        "done_id": done_id,
    }


class MyWorkView(StaffPermissionMixin, TemplateView):
    permission_required = "crm.view_customer"
    template_name = "crm/my_work.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(_my_context(self.request))
        return context


class FollowUpDoneView(StaffPermissionMixin, View):
    permission_required = "crm.change_followup"
    http_method_names = ["post"]

    def post(self, request, pk):
        follow_up = get_object_or_404(FollowUp, pk=pk)
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
                return HttpResponseRedirect(reverse("crm:my_work"))
        context = _my_context(request, done_form=form, done_id=follow_up.pk)
        return render(request, "crm/my_work.html", context, status=400)
