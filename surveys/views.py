"""Staff screens: survey list and builder, preview, campaigns, results and verbatims.

Thin: parse input, call a service or selector, render. Every view uses StaffPermissionMixin.
"""

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views import View
from django.views.generic import TemplateView
from django_tables2 import RequestConfig, SingleTableView

from crm.csv_export import csv_response
from crm.permissions import StaffPermissionMixin

from . import selectors, services
from .forms import CampaignForm, QuestionEditForm, QuestionForm, SurveyForm, VerbatimFilterForm
from .models import Campaign, Question, Survey
from .public_views import question_rows
from .tables import CampaignTable, SurveyTable, VerbatimTable


def _errors(exc: ValidationError) -> list[str]:
    if hasattr(exc, "message_dict"):
        return [f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items()]
    return list(exc.messages)


class SurveyListView(StaffPermissionMixin, SingleTableView):
    permission_required = "surveys.view_survey"
    table_class = SurveyTable
    template_name = "surveys/survey_list.html"
    paginate_by = 50

    def get_queryset(self):
        return selectors.survey_list()

    def get(self, request, *args, **kwargs):
        if request.GET.get("export") == "csv":
            return _survey_list_csv(self.get_queryset())
        return super().get(request, *args, **kwargs)


def _survey_list_csv(qs):
    header = [
        _("Survey id"),
        _("Survey"),
        _("Questions"),
        _("Campaigns"),
        _("Responses"),
        _("Created"),
    ]
    rows = qs.values_list(
        "pk", "title_en", "question_count", "campaign_count", "response_count", "created_at"
    )
    return csv_response(filename="surveys.csv", header=header, rows=rows.iterator(chunk_size=2000))


class SurveyCreateView(StaffPermissionMixin, View):
    permission_required = "surveys.add_survey"

    def get(self, request):
        return render(request, "surveys/survey_form.html", {"form": SurveyForm()})

    def post(self, request):
        form = SurveyForm(request.POST)
        if form.is_valid():
            try:
                survey = services.survey_create(**form.cleaned_data, created_by=request.user)
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(request, _("Survey created; now add its questions."))
                return HttpResponseRedirect(reverse("surveys:survey_edit", args=[survey.pk]))
        return render(request, "surveys/survey_form.html", {"form": form}, status=400)


class SurveyEditView(StaffPermissionMixin, View):
    """The builder: the survey's texts and its questions (htmx add/remove, plain POST too)."""

    permission_required = ("surveys.view_survey", "surveys.change_survey")

    def _context(self, survey, form=None, question_form=None):
        return {
            "survey": survey,
            "form": form or SurveyForm(instance=survey),
            "question_form": question_form or QuestionForm(initial={"required": True}),
            "questions": selectors.survey_questions(survey),
        }

    def get(self, request, pk):
        survey = get_object_or_404(Survey, pk=pk)
        return render(request, "surveys/survey_edit.html", self._context(survey))

    def post(self, request, pk):
        survey = get_object_or_404(Survey, pk=pk)
        form = SurveyForm(request.POST, instance=survey)
        if form.is_valid():
            try:
                services.survey_update(survey=survey, **form.cleaned_data)
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(request, _("Survey saved."))
                return HttpResponseRedirect(reverse("surveys:survey_edit", args=[pk]))
        survey.refresh_from_db()
        return render(
            request, "surveys/survey_edit.html", self._context(survey, form=form), status=400
        )


class QuestionAddView(StaffPermissionMixin, View):
    permission_required = ("surveys.view_survey", "surveys.change_survey")

    def post(self, request, pk):
        survey = get_object_or_404(Survey, pk=pk)
        form = QuestionForm(request.POST)
        errors: list[str] = []
        if form.is_valid():
            data = form.cleaned_data
            try:
                options = services.parse_options(data["options"])
                services.question_add(
                    survey=survey,
                    kind=data["kind"],
                    text_en=data["text_en"],
                    text_ko=data["text_ko"],
                    required=data["required"],
                    options=options,
                    scale_min=data["scale_min"],
                    scale_max=data["scale_max"],
                )
            except ValidationError as exc:
                errors = _errors(exc)
        else:
            errors = [f"{f}: {' '.join(e)}" for f, e in form.errors.items()]
        return _builder_response(request, survey, errors, form if errors else None)


class QuestionEditView(StaffPermissionMixin, View):
    permission_required = ("surveys.view_survey", "surveys.change_survey")
    template_name = "surveys/question_edit.html"

    def get(self, request, pk, question_pk):
        question = get_object_or_404(Question, pk=question_pk, survey_id=pk)
        options = "\n".join(
            f"{o['value']} | {o['en']} | {o.get('ko', '')}" for o in question.options
        )
        form = QuestionEditForm(
            initial={
                "text_en": question.text_en,
                "text_ko": question.text_ko,
                "required": question.required,
                "options": options,
            }
        )
        return render(request, self.template_name, {"question": question, "form": form})

    def post(self, request, pk, question_pk):
        question = get_object_or_404(Question, pk=question_pk, survey_id=pk)
        form = QuestionEditForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.question_update(
                    question=question,
                    text_en=data["text_en"],
                    text_ko=data["text_ko"],
                    required=data["required"],
                    options=services.parse_options(data["options"]),
                )
            except ValidationError as exc:
                for error in _errors(exc):
                    form.add_error(None, error)
            else:
                messages.success(request, _("Question saved."))
                return HttpResponseRedirect(reverse("surveys:survey_edit", args=[pk]))
        question.refresh_from_db()
        return render(request, self.template_name, {"question": question, "form": form}, status=400)


class QuestionRemoveView(StaffPermissionMixin, View):
    permission_required = ("surveys.view_survey", "surveys.change_survey")

    def post(self, request, pk, question_pk):
        question = get_object_or_404(Question, pk=question_pk, survey_id=pk)
        errors: list[str] = []
        try:
            services.question_remove(question=question)
        except ValidationError as exc:
            errors = _errors(exc)
        return _builder_response(request, question.survey, errors, None)


def _builder_response(request, survey, errors, form):
    status = 400 if errors else 200
    if request.headers.get("HX-Request"):
        context = {
            "survey": survey,
            "questions": selectors.survey_questions(survey),
            "question_form": form or QuestionForm(initial={"required": True}),
            "question_errors": errors,
        }
        # htmx swaps only 2xx responses by default, so errors come back inside the fragment with
        # 200; the plain-POST path answers 400 instead.
        return render(request, "surveys/_questions.html", context)
    if errors:
        for error in errors:
            messages.error(request, error)
        context = {
            "survey": survey,
            "form": SurveyForm(instance=survey),
            "question_form": form or QuestionForm(initial={"required": True}),
            "questions": selectors.survey_questions(survey),
        }
        return render(request, "surveys/survey_edit.html", context, status=status)
    messages.success(request, _("Questions saved."))
    return HttpResponseRedirect(reverse("surveys:survey_edit", args=[survey.pk]))


class SurveyPreviewView(StaffPermissionMixin, View):
    """The public form as a customer would see it, in English or Korean (?lang=ko)."""

    permission_required = "surveys.view_survey"

    def get(self, request, pk):
        survey = get_object_or_404(Survey, pk=pk)
        language = "ko" if request.GET.get("lang") == "ko" else "en"
        with translation.override(language):
            response = render(
                request,
                "public/survey_answer.html",
                {
                    "survey": survey,
                    "rows": question_rows(selectors.survey_questions(survey), {}, {}),
                    "first_name": "",
                    "preview": True,
                },
            )
        return response


class CampaignCreateView(StaffPermissionMixin, View):
    permission_required = ("surveys.view_campaign", "surveys.add_campaign")

    def _form(self, data=None, initial=None):
        return CampaignForm(data, initial=initial, bucket_choices=selectors.buckets())

    def get(self, request):
        initial = {"expiry_days": 30, "reminder_after_days": 7, "audience_kind": "filter"}
        if request.GET.get("survey"):
            initial["survey"] = request.GET["survey"]
        if request.GET.get("customer"):
            initial.update(audience_kind="customer", audience_customer=request.GET["customer"])
        if request.GET.get("query"):
            initial["audience_query"] = request.GET["query"]
        return render(request, "surveys/campaign_form.html", {"form": self._form(initial=initial)})

    def post(self, request):
        form = self._form(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                campaign = services.campaign_create(
                    survey=data["survey"],
                    name=data["name"],
                    audience_kind=data["audience_kind"],
                    audience_query=data["audience_query"],
                    audience_customer=data["audience_customer"],
                    audience_bucket_id=data["audience_bucket_id"],
                    expires_at=form.expires_at,
                    coupon_code=data["coupon_code"],
                    reminder_after_days=data["reminder_after_days"],
                    created_by=request.user,
                )
            except ValidationError as exc:
                for error in _errors(exc):
                    form.add_error(None, error)
            else:
                messages.success(request, _("Campaign created. Check the audience, then send."))
                return HttpResponseRedirect(reverse("surveys:campaign_detail", args=[campaign.pk]))
        return render(request, "surveys/campaign_form.html", {"form": form}, status=400)


class CampaignDetailView(StaffPermissionMixin, TemplateView):
    permission_required = "surveys.view_campaign"
    template_name = "surveys/campaign_detail.html"

    def get_context_data(self, **kwargs):
        campaign = get_object_or_404(Campaign.objects.select_related("survey"), pk=kwargs["pk"])
        stats = selectors.campaign_stats(survey=campaign.survey).get(pk=campaign.pk)
        try:
            counts = selectors.audience_counts(selectors.campaign_audience(campaign=campaign))
        except ValidationError:
            counts = None
        return {
            **super().get_context_data(**kwargs),
            "campaign": campaign,
            "stats": stats,
            "audience": counts,
            "scores": selectors.survey_scores(survey=campaign.survey, campaign=campaign),
            "reminders_due": selectors.reminders_due(campaign=campaign).count(),
        }


class CampaignSendView(StaffPermissionMixin, View):
    permission_required = ("surveys.view_campaign", "surveys.change_campaign")

    def post(self, request, pk):
        campaign = get_object_or_404(Campaign, pk=pk)
        try:
            outcome = services.campaign_send(campaign=campaign)
        except ValidationError as exc:
            for error in _errors(exc):
                messages.error(request, error)
            return HttpResponseRedirect(reverse("surveys:campaign_detail", args=[pk]), status=303)
        messages.success(
            request,
            _(
                "%(invited)d newly invited, %(queued)d emails queued; skipped %(opt)d opted out "
                "and %(noemail)d without email."
            )
            % {
                "invited": outcome.invited,
                "queued": outcome.queued,
                "opt": outcome.skipped_opt_out,
                "noemail": outcome.skipped_no_email,
            },
        )
        return HttpResponseRedirect(reverse("surveys:campaign_detail", args=[pk]), status=303)


class CampaignRemindView(StaffPermissionMixin, View):
    permission_required = ("surveys.view_campaign", "surveys.change_campaign")

    def post(self, request, pk):
        campaign = get_object_or_404(Campaign, pk=pk)
        queued = services.campaign_remind(campaign=campaign)
        messages.success(request, _("%(n)d reminders queued.") % {"n": queued})
        return HttpResponseRedirect(reverse("surveys:campaign_detail", args=[pk]), status=303)


class SurveyResultsView(StaffPermissionMixin, TemplateView):
    """Scores, trend, per bucket and per campaign; ?export=csv downloads the campaigns table,
    ?export=csv&table=buckets the per-bucket one."""

    permission_required = "surveys.view_results"
    template_name = "surveys/survey_results.html"

    def get(self, request, *args, **kwargs):
        if request.GET.get("export") == "csv":
            survey = get_object_or_404(Survey, pk=kwargs["pk"])
            if request.GET.get("table") == "buckets":
                return _results_by_bucket_csv(survey)
            return _results_by_campaign_csv(survey)
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        survey = get_object_or_404(Survey, pk=kwargs["pk"])
        table = CampaignTable(selectors.campaign_stats(survey=survey))
        RequestConfig(self.request, paginate={"per_page": 25}).configure(table)
        trend = selectors.weekly_trend(survey=survey)
        return {
            **super().get_context_data(**kwargs),
            "survey": survey,
            "scores": selectors.survey_scores(survey=survey),
            "campaigns": table,
            "by_bucket": selectors.nps_by_bucket(survey=survey),
            "trend_json": json.dumps(trend),
            "trend": trend,
        }


class VerbatimListView(StaffPermissionMixin, View):
    permission_required = "surveys.view_results"

    def get(self, request, pk):
        survey = get_object_or_404(Survey, pk=pk)
        form = VerbatimFilterForm(request.GET or None, survey=survey)
        filters = {}
        if form.is_bound:
            if not form.is_valid():
                return render(
                    request,
                    "surveys/verbatims.html",
                    {"survey": survey, "form": form, "table": None},
                    status=400,
                )
            data = form.cleaned_data
            filters = {
                "campaign_id": data["campaign"].pk if data["campaign"] else None,
                "since": data["since"],
                "until": data["until"],
                "contains": data["contains"],
                "unhappy_only": data["unhappy_only"],
            }
        qs = selectors.verbatims(survey=survey, **filters)
        if request.GET.get("export") == "csv":
            return _verbatims_csv(survey, qs)
        table = VerbatimTable(qs)
        RequestConfig(request, paginate={"per_page": 50}).configure(table)
        return render(
            request, "surveys/verbatims.html", {"survey": survey, "form": form, "table": table}
        )


def _verbatims_csv(survey, qs):
    header = ["answered_at", "customer_id", "customer", "campaign", "question", "answer", "unhappy"]
    rows = (
        (
            answer.response.finished_at.isoformat(),
            answer.response.customer_id,
            answer.response.customer.full_name,
            answer.response.campaign.name,
            answer.question.text_en,
            answer.value_text,
            "yes" if answer.response.unhappy else "no",
        )
        for answer in qs.iterator(chunk_size=2000)
    )
    return csv_response(filename=f"verbatims-survey-{survey.pk}.csv", header=header, rows=rows)


def _results_by_campaign_csv(survey):
    header = [
        _("Campaign id"),
        _("Campaign"),
        _("Created"),
        _("Expires"),
        _("Sent"),
        _("Opened"),
        _("Answered"),
        _("Response rate (%)"),
    ]
    rows = (
        (
            c.pk,
            c.name,
            c.created_at.isoformat() if c.created_at else "",
            c.expires_at.isoformat() if c.expires_at else "",
            c.sent,
            c.opened,
            c.answered,
            selectors.response_rate(c.answered, c.sent),
        )
        for c in selectors.campaign_stats(survey=survey).iterator(chunk_size=2000)
    )
    return csv_response(filename=f"survey-{survey.pk}-campaigns.csv", header=header, rows=rows)


def _results_by_bucket_csv(survey):
    header = [
        _("Bucket id"),
        _("Bucket"),
        _("Responses"),
        _("NPS"),
        _("NPS answers"),
        _("CSAT"),
        _("CES"),
    ]
    rows = (
        (
            r["bucket_id"],
            r["bucket_name"],
            r["responses"],
            r["nps"],
            r["nps_answers"],
            r["csat"],
            r["ces"],
        )
        for r in selectors.nps_by_bucket(survey=survey)
    )
    return csv_response(filename=f"survey-{survey.pk}-buckets.csv", header=header, rows=rows)
