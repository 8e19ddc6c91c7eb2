"""The personal-link pages: token handling, answering, resuming and every bad input."""

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from crm.models import Customer, FollowUp
from crm.tests.factories import CustomerFactory
from surveys import tokens
from surveys.models import MAX_TEXT_ANSWER, Answer, Invitation, Response, ResponseDraft

from .survey_helpers import (  # noqa: F401 - fixture
    _fresh_rate_limit,
    full_answers,
    make_campaign,
    make_invitation,
    make_survey,
    open_link,
)

pytestmark = pytest.mark.django_db


def test_only_the_hash_is_stored_and_get_never_spends_the_link(client):
    invitation, token = make_invitation()
    assert not Invitation.objects.filter(token_hash=token).exists()
    assert invitation.token_hash == tokens.token_hash(token)
    for _ in range(3):  # mail scanners open links first
        page = open_link(client, token)
        assert page.status_code == 200
    assert not Response.objects.exists()
    invitation.refresh_from_db()
    assert invitation.opened_at is not None


def test_first_get_redirects_to_a_token_free_address_with_private_headers(client):
    invitation, token = make_invitation()
    first = client.get(f"/s/{token}/")
    assert first.status_code == 302 and token not in first["Location"]
    assert "no-store" in first["Cache-Control"]
    assert first["Referrer-Policy"] == "no-referrer"
    page = client.get("/s/answer/")
    assert token not in page.content.decode()
    assert "no-store" in page["Cache-Control"] and page["Referrer-Policy"] == "no-referrer"


def test_page_shows_only_the_first_name_in_the_customer_language(client):
    customer = CustomerFactory(
        first_name="Minji", last_name="Secretname", preferred_language="ko", email="m@x.kr"
    )
    _, token = make_invitation(customer=customer)
    page = open_link(client, token)
    body = page.content.decode()
    assert "Minji" in body and "Secretname" not in body and "m@x.kr" not in body
    assert "질문 nps" in body  # Korean question text
    assert page["Content-Language"] == "ko"


def test_finished_post_saves_answers_and_spends_the_link(client):
    invitation, token = make_invitation()
    survey = invitation.campaign.survey
    open_link(client, token)
    done = client.post("/s/answer/", full_answers(survey))
    assert done.status_code == 200
    response = Response.objects.get(invitation=invitation)
    assert Answer.objects.filter(response=response).count() == 7
    assert set(Answer.objects.get(response=response, kind="multiple").value_choices) == {"a", "b"}
    # The same link now says "already answered", on GET and on a second POST.
    again = open_link(client, token)
    assert "already answered" in again.content.decode()
    second = client.post("/s/answer/", full_answers(survey))
    assert second.status_code == 409
    assert "already answered" in second.content.decode()
    assert Response.objects.count() == 1


def test_coupon_is_shown_after_completion(client):
    campaign = make_campaign(coupon_code="THANKS10")
    invitation, token = make_invitation(campaign)
    open_link(client, token)
    assert "THANKS10" not in client.get("/s/answer/").content.decode()
    done = client.post("/s/answer/", full_answers(campaign.survey))
    assert "THANKS10" in done.content.decode()


def test_partial_answers_are_saved_and_resumed(client):
    invitation, token = make_invitation()
    survey = invitation.campaign.survey
    nps = survey.questions.get(kind="nps")
    open_link(client, token)
    saved = client.post("/s/answer/", {"action": "save", f"q{nps.id}": "8"})
    assert saved.status_code == 200
    assert ResponseDraft.objects.get(invitation=invitation).data == {str(nps.id): 8}
    assert not Response.objects.exists()
    client.cookies.clear()  # a new browser session: the link resumes the draft
    page = open_link(client, token)
    assert f'name="q{nps.id}" value="8" checked' in page.content.decode()
    done = client.post("/s/answer/", full_answers(survey, nps="8"))
    assert done.status_code == 200
    assert not ResponseDraft.objects.exists()


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("nps", "11", "from 0 to 10"),
        ("nps", "-1", "from 0 to 10"),
        ("csat", "0", "from 1 to 5"),
        ("ces", "8", "from 1 to 7"),
        ("rating", "6", "from 1 to 5"),
        ("nps", "ten", "value on the scale"),
        ("single", "zzz", "options shown"),
        ("multiple", ["a", "zzz"], "options shown"),
        ("text", "x" * (MAX_TEXT_ANSWER + 1), "under 5000"),
    ],
)
def test_bad_answers_are_refused_with_a_clear_message(client, kind, value, message):
    invitation, token = make_invitation()
    open_link(client, token)
    bad = client.post("/s/answer/", full_answers(invitation.campaign.survey, **{kind: value}))
    assert bad.status_code == 400
    assert message in bad.content.decode()
    assert not Response.objects.exists() and not Answer.objects.exists()


def test_missing_required_answer_is_refused(client):
    invitation, token = make_invitation()
    open_link(client, token)
    data = full_answers(invitation.campaign.survey)
    del data[f"q{invitation.campaign.survey.questions.get(kind='csat').id}"]
    bad = client.post("/s/answer/", data)
    assert bad.status_code == 400
    assert "needs an answer" in bad.content.decode()
    assert not Response.objects.exists()


def test_optional_question_may_be_skipped(client):
    invitation, token = make_invitation()
    open_link(client, token)
    done = client.post("/s/answer/", full_answers(invitation.campaign.survey, text=None))
    assert done.status_code == 200
    assert not Answer.objects.filter(kind="text").exists()


def test_expired_link_gets_410(client):
    campaign = make_campaign()
    _, token = make_invitation(campaign)
    campaign.expires_at = timezone.now() - dt.timedelta(minutes=1)
    campaign.save()
    first = client.get(f"/s/{token}/")
    page = client.get(first["Location"])
    assert page.status_code == 410
    assert "closed" in page.content.decode()
    assert client.post("/s/answer/", full_answers(campaign.survey)).status_code == 410
    assert not Response.objects.exists()


@pytest.mark.parametrize("mangle", ["flip", "short", "unknown"])
def test_tampered_or_unknown_link_gets_404_revealing_nothing(client, mangle):
    invitation, token = make_invitation()
    bad = {
        "flip": token[:-1] + ("A" if token[-1] != "A" else "B"),
        "short": token[:20],
        "unknown": tokens.token_new(),
    }[mangle]
    page = client.get(f"/s/{bad}/")
    assert page.status_code == 404
    body = page.content.decode()
    assert "not recognised" in body and invitation.customer.first_name not in body
    assert client.get("/s/answer/").status_code == 404  # nothing was put in the session


def test_answer_page_without_a_session_is_404(client):
    assert client.get("/s/answer/").status_code == 404
    assert client.post("/s/answer/", {}).status_code == 404


def test_post_needs_csrf(client):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    invitation, token = make_invitation()
    open_link(strict, token)
    refused = strict.post("/s/answer/", full_answers(invitation.campaign.survey))
    assert refused.status_code == 403
    assert not Response.objects.exists()


def test_rate_limit_per_ip_gives_429(client, settings):
    settings.SURVEYS_RATE_LIMIT = 3
    for _ in range(3):
        assert client.get("/s/answer/").status_code == 404
    limited = client.get(f"/s/{tokens.token_new()}/")
    assert limited.status_code == 429
    assert "Too many requests" in limited.content.decode()
    assert limited["Referrer-Policy"] == "no-referrer"


def test_reminder_link_opens_the_same_invitation(client):
    invitation, _ = make_invitation()
    token2, digest2 = tokens.token_pair()
    Invitation.objects.filter(pk=invitation.pk).update(reminder_token_hash=digest2)
    assert open_link(client, token2).status_code == 200


def test_unhappy_nps_opens_a_follow_up_for_the_owner_due_in_two_working_days(client):
    invitation, token = make_invitation()
    open_link(client, token)
    client.post("/s/answer/", full_answers(invitation.campaign.survey, nps="3", text="Slow"))
    response = Response.objects.get()
    assert response.unhappy
    follow_up = FollowUp.objects.get()
    customer = Customer.objects.get(pk=invitation.customer_id)
    assert follow_up.source == "survey" and follow_up.source_ref == str(response.pk)
    assert follow_up.assigned_to_id == customer.owner_id is not None
    assert "NPS 3" in follow_up.reason and "Slow" in follow_up.reason
    from surveys.workdays import add_working_days

    assert follow_up.due_on == add_working_days(timezone.localdate(), 2)
    assert follow_up.due_on.weekday() < 5


def test_unhappy_csat_without_owner_goes_to_the_unassigned_queue(client):
    invitation, token = make_invitation(customer=CustomerFactory(owner=None))
    open_link(client, token)
    client.post("/s/answer/", full_answers(invitation.campaign.survey, csat="2"))
    assert FollowUp.objects.get().assigned_to is None


def test_happy_answers_open_no_follow_up(client):
    invitation, token = make_invitation()
    open_link(client, token)
    client.post("/s/answer/", full_answers(invitation.campaign.survey, nps="7", csat="3"))
    assert not FollowUp.objects.exists()


def test_next_answer_shows_whether_the_customer_recovered(client):
    customer = CustomerFactory()
    survey = make_survey()
    first, token1 = make_invitation(make_campaign(survey), customer)
    open_link(client, token1)
    client.post("/s/answer/", full_answers(survey, nps="2"))
    second, token2 = make_invitation(make_campaign(survey, name="Later"), customer)
    open_link(client, token2)
    client.post("/s/answer/", full_answers(survey, nps="10"))
    assert Response.objects.get(invitation=first).recovered is None
    assert Response.objects.get(invitation=second).recovered is True


def test_finishing_post_is_cheap_in_queries(client, django_assert_max_num_queries):
    invitation, token = make_invitation()
    open_link(client, token)
    data = full_answers(invitation.campaign.survey)
    # One read (link, campaign, survey, customer and questions) and one INSERT statement for
    # the response and all its answers; the savepoint pair only exists inside the test's
    # transaction. No session query: the link is remembered in a signed cookie. (SQLite, for
    # make run, takes the portable path: two reads and two INSERTs.)
    with django_assert_max_num_queries(4 if connection.vendor == "postgresql" else 6):
        assert client.post("/s/answer/", data).status_code == 200


def test_answer_form_is_one_query(client, django_assert_max_num_queries):
    _, token = make_invitation()
    assert client.get(f"/s/{token}/").status_code == 302
    with django_assert_max_num_queries(1 if connection.vendor == "postgresql" else 2):
        assert client.get("/s/answer/").status_code == 200
