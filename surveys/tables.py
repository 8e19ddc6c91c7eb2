"""django-tables2 tables for the survey screens."""

import django_tables2 as tables
from django.utils.translation import gettext_lazy as _

from .models import Answer, Campaign, Survey


class SurveyTable(tables.Table):
    title_en = tables.LinkColumn(
        "surveys:survey_results", args=[tables.A("pk")], verbose_name=_("survey")
    )
    question_count = tables.Column(verbose_name=_("questions"))
    campaign_count = tables.Column(verbose_name=_("campaigns"))
    response_count = tables.Column(verbose_name=_("responses"))
    created_at = tables.DateColumn(verbose_name=_("created"))
    edit = tables.TemplateColumn(
        template_name="surveys/_survey_actions.html", verbose_name="", orderable=False
    )

    class Meta:
        model = Survey
        fields = ["title_en", "question_count", "campaign_count", "response_count", "created_at"]
        sequence = [
            "title_en",
            "question_count",
            "campaign_count",
            "response_count",
            "created_at",
            "edit",
        ]
        order_by = ["-created_at"]


class CampaignTable(tables.Table):
    name = tables.LinkColumn("surveys:campaign_detail", args=[tables.A("pk")])
    sent = tables.Column(verbose_name=_("sent"))
    opened = tables.Column(verbose_name=_("opened"))
    answered = tables.Column(verbose_name=_("answered"))
    rate = tables.TemplateColumn(
        "{% load surveys_extras %}{{ record.answered|pct_of:record.sent }}",
        verbose_name=_("response rate"),
        orderable=False,
    )

    class Meta:
        model = Campaign
        fields = ["name", "created_at", "expires_at", "sent", "opened", "answered"]
        sequence = ["name", "created_at", "expires_at", "sent", "opened", "answered", "rate"]
        order_by = ["-created_at"]


class VerbatimTable(tables.Table):
    finished_at = tables.DateTimeColumn(
        accessor="response__finished_at", verbose_name=_("answered"), format="Y-m-d H:i"
    )
    customer = tables.LinkColumn(
        "crm:customer_detail",
        args=[tables.A("response__customer_id")],
        accessor="response__customer",
        verbose_name=_("customer"),
        orderable=False,
    )
    campaign = tables.Column(accessor="response__campaign__name", verbose_name=_("campaign"))
    question = tables.Column(accessor="question__text_en", verbose_name=_("question"))
    value_text = tables.Column(verbose_name=_("answer"), attrs={"td": {"class": "wrap"}})
    unhappy = tables.BooleanColumn(accessor="response__unhappy", verbose_name=_("unhappy"))

    class Meta:
        model = Answer
        fields = ["value_text"]
        sequence = ["finished_at", "customer", "campaign", "question", "value_text", "unhappy"]
        order_by = ["-finished_at"]
