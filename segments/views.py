"""Bucket screens: list, editor (htmx rows + plain-POST fallback, live preview), detail."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views import View
from django.views.generic import TemplateView
from django_filters.views import FilterView
from django_tables2 import SingleTableMixin
from django_tables2.paginators import LazyPaginator

from crm.csv_export import csv_response
from crm.permissions import StaffPermissionMixin

from . import rules as rules_mod
from . import selectors, services
from .filters import MemberFilter
from .forms import (
    BucketForm,
    apply_action,
    rules_from_state,
    state_from_post,
    state_from_rules,
    state_number_paths,
)
from .models import Bucket
from .tables import BucketTable, MemberTable


def _bucket_or_404(pk) -> Bucket:
    try:
        return Bucket.objects.get(pk=pk)
    except Bucket.DoesNotExist:
        raise Http404(_("No such bucket."))


class BucketListView(StaffPermissionMixin, SingleTableMixin, TemplateView):
    permission_required = "segments.view_bucket"
    template_name = "segments/bucket_list.html"
    table_class = BucketTable
    table_pagination = False

    def get_table_data(self):
        return selectors.bucket_list()

    def get(self, request, *args, **kwargs):
        if request.GET.get("export") == "csv":
            return self.export_csv()
        return super().get(request, *args, **kwargs)

    def export_csv(self):
        """Every bucket as on the page (rules in words, not cut short)."""
        rows = (
            (
                b.priority,
                b.pk,
                b.name,
                _("yes") if b.active else _("no"),
                b.member_count,
                rules_mod.describe(b.rules),
                b.version,
            )
            for b in self.get_table_data()
        )
        header = [
            _("Priority"),
            _("Bucket id"),
            _("Name"),
            _("Active"),
            _("Members"),
            _("Rules"),
            _("Rules version"),
        ]
        return csv_response(filename="buckets.csv", header=header, rows=rows)

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["unsegmented_count"] = selectors.unsegmented_count()
        ctx["too_many"] = selectors.too_many_active_buckets()
        ctx["max_active"] = selectors.MAX_ACTIVE_BUCKETS
        return ctx


def _editor_context(state, **extra):
    state_number_paths(state)
    return {
        "state": state,
        "fields": rules_mod.FIELDS.values(),
        "operator_words": rules_mod.OPERATOR_WORDS,
        **extra,
    }


class BucketEditView(StaffPermissionMixin, View):
    """New (no pk) or edit. POST with action=save saves through the service; any other action
    (add_row, add_group, remove_row-<i>, refresh) only reshapes the rule rows: htmx requests
    get the editor partial back, plain posts the whole page (the no-JavaScript fallback)."""

    template_name = "segments/bucket_form.html"

    def get_permission_required(self):
        return ("segments.change_bucket",) if "pk" in self.kwargs else ("segments.add_bucket",)

    def get_bucket(self):
        return _bucket_or_404(self.kwargs["pk"]) if "pk" in self.kwargs else None

    def render_page(self, request, form, state, bucket, status=200):
        ctx = _editor_context(state, form=form, bucket=bucket)
        return render(request, self.template_name, ctx, status=status)

    def get(self, request, *args, **kwargs):
        bucket = self.get_bucket()
        if bucket is None:
            next_priority = (
                Bucket.objects.order_by("-priority").values_list("priority", flat=True).first() or 0
            ) + 1
            form = BucketForm(initial={"priority": next_priority, "active": True})
            state = state_from_rules(None)
        else:
            form = BucketForm(
                initial={
                    f: getattr(bucket, f)
                    for f in ("name", "persona", "colour", "priority", "active")
                }
            )
            state = state_from_rules(bucket.rules)
        return self.render_page(request, form, state, bucket)

    def post(self, request, *args, **kwargs):
        bucket = self.get_bucket()
        state = state_from_post(request.POST)
        action = request.POST.get("action", "save")
        if action != "save":
            apply_action(state, action)
            if request.headers.get("HX-Request"):
                return render(request, "segments/_rules_editor.html", _editor_context(state))
            # Unbound, so that reshaping rows shows no "required" errors yet.
            initial = {**request.POST.dict(), "active": "active" in request.POST}
            return self.render_page(request, BucketForm(initial=initial), state, bucket)
        form = BucketForm(request.POST)
        try:
            rule_tree = rules_from_state(state)
        except ValueError as exc:
            state.errors = [str(exc)]
            rule_tree = None
        if not form.is_valid() or rule_tree is None:
            return self.render_page(request, form, state, bucket, status=400)
        data = form.cleaned_data
        try:
            if bucket is None:
                bucket = services.bucket_create(rules=rule_tree, user=request.user, **data)
            else:
                services.bucket_update(bucket=bucket, rules=rule_tree, user=request.user, **data)
        except ValidationError as exc:
            for name, errors in exc.message_dict.items():
                if name == "rules":
                    state.errors = errors
                elif name in form.fields:
                    for error in errors:
                        form.add_error(name, error)
                else:
                    for error in errors:
                        form.add_error(None, error)
            return self.render_page(request, form, state, bucket, status=400)
        messages.success(request, _("Bucket “%(name)s” saved.") % {"name": bucket.name})
        if selectors.too_many_active_buckets():
            messages.warning(
                request,
                _("More than %(n)d active buckets: consider merging some.")
                % {"n": selectors.MAX_ACTIVE_BUCKETS},
            )
        return HttpResponseRedirect(reverse("segments:bucket_detail", args=[bucket.pk]))


class BucketPreviewView(StaffPermissionMixin, View):
    """htmx: how many customers the posted rules match, alone and after exclusivity."""

    permission_required = ("segments.view_bucket", "segments.change_bucket")

    def post(self, request, *args, **kwargs):
        state = state_from_post(request.POST)
        ctx = {}
        try:
            rule_tree = rules_from_state(state)
            priority = _positive_int(request.POST.get("priority"))
            bucket_id = _positive_int(request.POST.get("bucket_id"))
            ctx["preview"] = selectors.bucket_preview(
                rules=rule_tree, priority=priority, bucket_id=bucket_id
            )
            ctx["words"] = rules_mod.describe(rule_tree)
        except ValueError as exc:
            ctx["errors"] = [str(exc)]
        except ValidationError as exc:
            ctx["errors"] = exc.messages
        return render(request, "segments/_preview.html", ctx)


def _positive_int(value):
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2**31 else None


MEMBER_CSV_COLUMNS = [
    ("id", "id"),
    ("first_name", "first_name"),
    ("last_name", "last_name"),
    ("email", "email"),
    ("city", "city"),
    ("status", "status"),
    ("service_effort", "effort"),
    ("influence", "influence"),
    ("metrics__buyer_type", "buyer_type"),
    ("metrics__value_decile", "value_decile"),
    ("metrics__contribution_window", "contribution_window"),
    ("current_membership__since", "member_since"),
]


class BucketDetailView(StaffPermissionMixin, SingleTableMixin, FilterView):
    """Persona, rules in words, members (filterable; ?export=csv streams them all), history."""

    permission_required = "segments.view_bucket"
    template_name = "segments/bucket_detail.html"
    table_class = MemberTable
    filterset_class = MemberFilter
    paginator_class = LazyPaginator
    table_pagination = {"per_page": 50}

    def dispatch(self, request, *args, **kwargs):
        self.bucket = None
        return super().dispatch(request, *args, **kwargs)

    def get_queryset(self):
        if self.bucket is None:
            self.bucket = _bucket_or_404(self.kwargs["pk"])
        return selectors.bucket_members(bucket=self.bucket)

    def get(self, request, *args, **kwargs):
        if request.GET.get("export") == "csv":
            return self.export_csv()
        return super().get(request, *args, **kwargs)

    def export_csv(self):
        filterset = self.get_filterset(self.get_filterset_class())
        qs = filterset.qs if filterset.is_valid() else filterset.queryset.none()
        rows = qs.order_by("pk").values_list(*[name for name, _label in MEMBER_CSV_COLUMNS])
        return csv_response(
            filename=f"bucket-{self.bucket.pk}.csv",
            header=[label for _name, label in MEMBER_CSV_COLUMNS],
            rows=rows.iterator(chunk_size=2000),
        )

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        bucket = self.bucket
        ctx["bucket"] = bucket
        ctx["rule_words"] = rules_mod.describe(bucket.rules)
        ctx["rule_lines"] = rules_mod.describe_lines(bucket.rules)
        ctx["history"] = selectors.bucket_history(bucket=bucket)
        ctx["member_count"] = bucket.current_members.count()
        return ctx
