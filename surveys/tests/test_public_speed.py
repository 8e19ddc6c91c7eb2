"""The fast paths of the public survey pages keep every guarantee of the plain ORM versions:
the one-round-trip read, the one-statement response INSERT, and the signed link cookie."""

import pytest
from django.db import IntegrityError, connection

from crm.tests.factories import CustomerFactory
from surveys import public_selectors, selectors, services
from surveys.answers import answers_parse
from surveys.models import Answer, Response, ResponseDraft
from surveys.public_views import LINK_COOKIE

from .survey_helpers import (  # noqa: F401 - fixture
    _fresh_rate_limit,
    full_answers,
    make_campaign,
    make_invitation,
    make_survey,
    open_link,
)

pytestmark = pytest.mark.django_db


def _values(survey, questions, **overrides):
    raw = {
        k: v if isinstance(v, list) else [v]
        for k, v in full_answers(survey, **overrides).items()
        if k != "action"
    }
    return answers_parse(questions, raw, require_all=True).values


def test_one_round_trip_read_matches_the_orm_selectors(django_assert_num_queries):
    if connection.vendor != "postgresql":
        pytest.skip("the one-round-trip read is PostgreSQL's; others use the ORM selectors")
    invitation, _ = make_invitation()
    ResponseDraft.objects.create(invitation=invitation, data={})
    with django_assert_num_queries(1):
        fast, questions = public_selectors.invitation_with_questions(invitation.token_hash)
    slow = selectors.invitation_for_hash(invitation.token_hash)
    slow_questions = selectors.survey_questions(slow.campaign.survey)
    with django_assert_num_queries(0):  # everything the pages use is loaded
        assert (fast.pk, fast.campaign_id, fast.customer_id) == (
            slow.pk,
            slow.campaign_id,
            slow.customer_id,
        )
        assert (fast.answered, fast.has_draft) == (False, True)
        assert fast.campaign.expires_at == slow.campaign.expires_at
        assert fast.campaign.coupon_code == slow.campaign.coupon_code
        assert fast.campaign.survey.title == slow.campaign.survey.title
        assert fast.campaign.survey.intro == slow.campaign.survey.intro
        assert fast.customer.first_name == slow.customer.first_name
        assert fast.customer.preferred_language == slow.customer.preferred_language
        assert fast.customer.owner_id == slow.customer.owner_id
        fields = public_selectors.QUESTION_FIELDS
        assert [[getattr(q, f) for f in fields] for q in questions] == [
            [getattr(q, f) for f in fields] for q in slow_questions
        ]
        assert [q.scale for q in questions] == [q.scale for q in slow_questions]


def test_one_round_trip_read_of_unknown_or_empty_hash():
    make_invitation()
    assert public_selectors.invitation_with_questions("0" * 64) == (None, [])
    assert public_selectors.invitation_with_questions("") == (None, [])


def test_reminder_hash_and_answered_flag():
    invitation, _ = make_invitation()
    Response.objects.create(
        invitation=invitation,
        campaign=invitation.campaign,
        survey=invitation.campaign.survey,
        customer=invitation.customer,
    )
    invitation.reminder_token_hash = "f" * 64
    invitation.save(update_fields=["reminder_token_hash"])
    fast, _ = public_selectors.invitation_with_questions("f" * 64)
    assert fast.pk == invitation.pk and fast.answered is True


@pytest.mark.parametrize("path", ["sql", "orm"])
def test_both_insert_paths_store_the_same_rows(path, monkeypatch):
    if path == "orm":  # what SQLite (make run) uses
        monkeypatch.setattr(services, "_response_insert_pg", services._response_insert_orm)
    customer = CustomerFactory()
    survey = make_survey()
    questions = selectors.survey_questions(survey)
    first, _ = make_invitation(make_campaign(survey), customer)
    services.response_submit(
        invitation=first,
        questions=questions,
        values=_values(survey, questions, nps="2"),
        language="en",
    )
    second, _ = make_invitation(make_campaign(survey, name="Later"), customer)
    response = services.response_submit(
        invitation=second, questions=questions, values=_values(survey, questions), language="ko"
    )
    assert response.recovered is True  # read back on demand
    stored = Response.objects.get(invitation=second)
    assert (stored.pk, stored.language, stored.unhappy, stored.recovered) == (
        response.pk,
        "ko",
        False,
        True,
    )
    assert Response.objects.get(invitation=first).recovered is None
    answers = {a.kind: a for a in Answer.objects.filter(response=stored)}
    assert answers["nps"].value_int == 9 and answers["csat"].value_int == 5
    assert answers["single"].value_text == "a" and answers["multiple"].value_choices == ["a", "b"]
    assert answers["text"].value_text == "Great service" and answers["text"].value_int is None
    assert answers["nps"].value_text == "" and answers["nps"].value_choices == []


@pytest.mark.django_db(transaction=True)
def test_single_statement_insert_is_all_or_nothing():
    """Outside any transaction a bad answer (here one past the database's NPS range) leaves
    neither the response nor any answer behind."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    invitation, _ = make_invitation()
    questions = selectors.survey_questions(invitation.campaign.survey)
    values = _values(invitation.campaign.survey, questions)
    nps = next(q for q in questions if q.kind == "nps")
    values[nps.id] = 11  # bypassing answers_parse on purpose
    fast, questions = public_selectors.invitation_with_questions(invitation.token_hash)
    assert not connection.in_atomic_block and fast.has_draft is False
    with pytest.raises(IntegrityError):
        services.response_submit(invitation=fast, questions=questions, values=values, language="en")
    assert not Response.objects.exists() and not Answer.objects.exists()


def test_link_cookie_is_signed_private_and_scoped(client):
    invitation, token = make_invitation()
    first = client.get(f"/s/{token}/")
    cookie = first.cookies[LINK_COOKIE]
    assert token not in cookie.value
    assert cookie["httponly"] and cookie["path"] == "/s/" and cookie["samesite"] == "Lax"
    assert client.get("/s/answer/").status_code == 200
    from django.contrib.sessions.models import Session

    assert not Session.objects.exists()  # no session row per opened link


def test_tampered_link_cookie_gets_the_invalid_page(client):
    invitation, token = make_invitation()
    client.get(f"/s/{token}/")
    value = client.cookies[LINK_COOKIE].value
    other, _ = make_invitation()
    client.cookies[LINK_COOKIE] = value.replace(invitation.token_hash, other.token_hash)
    page = client.get("/s/answer/")
    assert page.status_code == 404 and other.customer.first_name not in page.content.decode()
    client.cookies[LINK_COOKIE] = other.token_hash  # unsigned
    assert client.get("/s/answer/").status_code == 404
