"""Shared builders for the survey tests."""

import datetime as dt

import pytest
from django.core.cache import cache
from django.utils import timezone

from crm.tests.factories import CustomerFactory, UserFactory
from surveys import tokens
from surveys.models import Campaign, Invitation, Question, QuestionKind, Survey

ALL_KINDS = ["nps", "csat", "ces", "rating", "single", "multiple", "text"]


@pytest.fixture(autouse=True)
def _fresh_rate_limit():
    """The rate-limit counters live in the (process-wide) cache: start every test clean."""
    cache.clear()
    yield
    cache.clear()


def make_survey(kinds=ALL_KINDS, *, required=True, title="Service check") -> Survey:
    survey = Survey.objects.create(title_en=title, title_ko="서비스 점검")
    for order, kind in enumerate(kinds, start=1):
        Question.objects.create(
            survey=survey,
            order=order,
            kind=kind,
            text_en=f"Question {kind}",
            text_ko=f"질문 {kind}",
            required=required and kind != QuestionKind.TEXT,
            options=[
                {"value": "a", "en": "Apples", "ko": "사과"},
                {"value": "b", "en": "Bananas", "ko": "바나나"},
            ]
            if kind in ("single", "multiple")
            else [],
            scale_min=1 if kind == "rating" else None,
            scale_max=5 if kind == "rating" else None,
        )
    return survey


def make_campaign(survey=None, *, expires_in_days=30, **kwargs) -> Campaign:
    return Campaign.objects.create(
        survey=survey or make_survey(),
        name=kwargs.pop("name", "Spring"),
        audience_kind=kwargs.pop("audience_kind", "filter"),
        expires_at=timezone.now() + dt.timedelta(days=expires_in_days),
        queued_at=timezone.now(),
        **kwargs,
    )


def make_invitation(campaign=None, customer=None, *, sent_days_ago=0) -> tuple[Invitation, str]:
    """An invitation already emailed; returns it with the link token (only its hash stored)."""
    token, digest = tokens.token_pair()
    invitation = Invitation.objects.create(
        campaign=campaign or make_campaign(),
        customer=customer or CustomerFactory(owner=UserFactory()),
        token_hash=digest,
        sent_at=timezone.now() - dt.timedelta(days=sent_days_ago),
    )
    return invitation, token


def full_answers(survey, **overrides) -> dict[str, object]:
    """A valid complete POST body for make_survey's questions, by kind."""
    defaults = {
        "nps": "9",
        "csat": "5",
        "ces": "6",
        "rating": "4",
        "single": "a",
        "multiple": ["a", "b"],
        "text": "Great service",
    }
    defaults.update(overrides)
    data: dict[str, object] = {"action": "submit"}
    for q in survey.questions.all():
        if defaults.get(q.kind) is not None:
            data[f"q{q.id}"] = defaults[q.kind]
    return data


def open_link(client, token):
    """GET the personal link, following the token-free redirect; returns the answer page."""
    first = client.get(f"/s/{token}/")
    assert first.status_code == 302
    assert first["Location"] == "/s/answer/"
    return client.get("/s/answer/")
