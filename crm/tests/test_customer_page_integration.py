"""The customer page's cross-app panels: bucket and why, membership history, survey history
(scores, verbatims, recovery), churn interviews, open follow-ups; constant query count."""

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm.models import CustomerStatus, InteractionChannel
from crm.tests.factories import (
    CustomerFactory,
    FollowUpFactory,
    InteractionFactory,
    ManagerFactory,
    OrderFactory,
    SupportUserFactory,
    UserFactory,
)
from segments.models import CurrentMembership
from segments.services import memberships_refresh
from segments.tests.factories import BucketFactory
from surveys.models import Answer, ChurnInterview, Response
from surveys.tests.churn_helpers import reason
from surveys.tests.survey_helpers import make_campaign, make_invitation, make_survey

pytestmark = pytest.mark.django_db

HIGH_EFFORT = {"op": "and", "conditions": [{"field": "effort", "operator": ">=", "value": 7}]}


def page(client, customer):
    response = client.get(f"/customers/{customer.pk}/")
    assert response.status_code == 200
    return response, response.content.decode()


def respond(survey, customer, *, nps=None, csat=None, text="", days_ago=1, **flags):
    campaign = make_campaign(survey, name=f"Campaign {days_ago}")
    invitation, _token = make_invitation(campaign, customer)
    response = Response.objects.create(
        invitation=invitation,
        campaign=campaign,
        survey=survey,
        customer=customer,
        finished_at=timezone.now() - dt.timedelta(days=days_ago),
        **flags,
    )
    questions = {q.kind: q for q in survey.questions.all()}
    for kind, value in (("nps", nps), ("csat", csat)):
        if value is not None:
            Answer.objects.create(
                response=response, question=questions[kind], kind=kind, value_int=value
            )
    if text:
        Answer.objects.create(
            response=response, question=questions["text"], kind="text", value_text=text
        )
    return response


# --- permissions -------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client):
    customer = CustomerFactory()
    response = client.get(f"/customers/{customer.pk}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("factory", [SupportUserFactory, ManagerFactory])
def test_support_and_managers_see_every_panel(client, factory):
    client.force_login(factory())
    customer = CustomerFactory()
    _response, body = page(client, customer)
    for panel in ("customer-bucket", "customer-surveys", "customer-churn"):
        assert f'id="{panel}"' in body


def test_without_permission_is_403(client):
    client.force_login(UserFactory())
    assert client.get(f"/customers/{CustomerFactory().pk}/").status_code == 403


def test_panels_follow_the_apps_permissions(client):
    """Someone who may view customers but not survey results or churn interviews sees neither
    panel, and they cost no query."""
    user = UserFactory()
    user.user_permissions.add(Permission.objects.get(codename="view_customer"))
    client.force_login(user)
    response, body = page(client, CustomerFactory())
    assert response.context["survey_panel"] is None
    assert response.context["churn_panel"] is None
    assert 'id="customer-surveys"' not in body
    assert 'id="customer-churn"' not in body


# --- bucket ------------------------------------------------------------------------------------


def test_bucket_swatch_link_and_why(client_support):
    bucket = BucketFactory(name="Hand-holders", colour="#aa3300", rules=HIGH_EFFORT)
    customer = CustomerFactory(service_effort=9)
    memberships_refresh(as_of=dt.date(2026, 1, 1))
    _response, body = page(client_support, customer)
    reason_text = CurrentMembership.objects.get(customer=customer).reason
    assert "Hand-holders" in reason_text and "effort" in reason_text.lower()
    assert "background:#aa3300" in body
    assert f'href="/segments/{bucket.pk}/"' in body
    assert reason_text in body


def test_bucket_history_entered_and_left(client_support):
    BucketFactory(name="Hand-holders", rules=HIGH_EFFORT)
    customer = CustomerFactory(service_effort=9)
    memberships_refresh(as_of=dt.date(2026, 1, 1))
    customer.service_effort = 2
    customer.save(update_fields=["service_effort", "updated_at"])
    memberships_refresh(as_of=dt.date(2026, 2, 1))
    _response, body = page(client_support, customer)
    assert "2026-01-01 – 2026-02-01 · Hand-holders" in body
    assert "2026-02-01 – now · Unsegmented" in body


# --- surveys -----------------------------------------------------------------------------------


def test_survey_history_scores_verbatims_and_recovery(client_support):
    survey = make_survey(["nps", "csat", "text"], title="After delivery")
    customer = CustomerFactory()
    respond(
        survey, customer, nps=3, csat=1, text="Parcel arrived broken", days_ago=30, unhappy=True
    )
    respond(survey, customer, nps=9, text="Replacement was quick", days_ago=2, recovered=True)
    response, body = page(client_support, customer)
    panel = response.context["survey_panel"]
    assert [r.nps for r in panel["responses"]] == [9, 3]
    assert [r.csat for r in panel["responses"]] == [None, 1]
    assert panel["recovery"] == "recovered"
    assert "After delivery" in body
    assert "Parcel arrived broken" in body and "Replacement was quick" in body
    assert "Recovered" in body
    assert f'href="/surveys/{survey.pk}/results/"' in body


def test_survey_history_says_still_unhappy(client_support):
    survey = make_survey(["nps"])
    customer = CustomerFactory()
    respond(survey, customer, nps=2, days_ago=30, unhappy=True)
    respond(survey, customer, nps=4, days_ago=2, unhappy=True, recovered=False)
    response, body = page(client_support, customer)
    assert response.context["survey_panel"]["recovery"] == "still_unhappy"
    assert "Still unhappy" in body


def test_survey_history_only_this_customers_responses(client_support):
    survey = make_survey(["nps", "text"])
    customer = CustomerFactory()
    respond(survey, CustomerFactory(), nps=0, text="Someone else's complaint")
    response, body = page(client_support, customer)
    assert response.context["survey_panel"]["responses"] == []
    assert "Someone else&#x27;s complaint" not in body and "Someone else" not in body
    assert "No survey answered yet." in body


# --- churn interviews --------------------------------------------------------------------------


def test_churned_customer_without_interview_gets_a_link(client_support):
    customer = CustomerFactory(status=CustomerStatus.CHURNED)
    _response, body = page(client_support, customer)
    assert f'href="/churn/interview/{customer.pk}/new/"' in body


def test_active_customer_gets_no_interview_link(client_support):
    customer = CustomerFactory(status=CustomerStatus.ACTIVE)
    _response, body = page(client_support, customer)
    assert "/churn/interview/" not in body
    assert "has not left" in body


def test_interview_is_shown_instead_of_the_link(client_support, support_user):
    customer = CustomerFactory(status=CustomerStatus.CHURNED)
    code = reason(label_en="Too expensive")
    interview = ChurnInterview.objects.create(
        customer=customer,
        interviewer=support_user,
        interviewed_on=dt.date(2026, 3, 4),
        channel=InteractionChannel.PHONE,
        primary_reason=code,
        primary_reason_label_en="Too expensive",
        competitor="ShopCo",
        verbatim="Found it cheaper elsewhere",
        likelihood_to_return=3,
    )
    _response, body = page(client_support, customer)
    assert "Too expensive" in body and "ShopCo" in body and "Found it cheaper elsewhere" in body
    assert "2026-03-04" in body
    assert f'href="/churn/interview/{customer.pk}/new/"' not in body
    assert f'href="/churn/interviews/{interview.pk}/edit/"' in body


# --- follow-ups --------------------------------------------------------------------------------


def test_open_follow_ups_are_listed(client_support):
    customer = CustomerFactory()
    FollowUpFactory(customer=customer, reason="Unhappy NPS: call back")
    FollowUpFactory(
        customer=customer, reason="Long done", status="done", completed_at=timezone.now()
    )
    _response, body = page(client_support, customer)
    assert "Unhappy NPS: call back" in body
    assert "Long done" not in body


# --- query count -------------------------------------------------------------------------------


def _history(customer, n, survey, staff):
    for i in range(n):
        OrderFactory(customer=customer)
        InteractionFactory(customer=customer, staff=staff)
        FollowUpFactory(customer=customer, assigned_to=staff)
        respond(survey, customer, nps=i % 11, text=f"Note {i}", days_ago=i + 1, unhappy=i % 2 == 0)


def test_query_count_is_constant(client_support, support_user, django_assert_max_num_queries):
    survey = make_survey(["nps", "csat", "text"])
    BucketFactory(rules=HIGH_EFFORT)
    small, big = CustomerFactory(service_effort=9), CustomerFactory(service_effort=9)
    _history(small, 1, survey, support_user)
    _history(big, 50, survey, support_user)
    memberships_refresh(as_of=dt.date(2026, 1, 1))
    counts = []
    for customer in (small, big):
        with CaptureQueriesContext(connection) as ctx:
            page(client_support, customer)
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts
    with django_assert_max_num_queries(16):
        _response, body = page(client_support, big)
    assert "Note 0" in body and "Note 19" in body  # the newest 20 responses
    assert "Note 20" not in body and "Note 49" not in body


def test_managers_get_a_send_survey_link_support_does_not(client, support_user, manager):
    customer = CustomerFactory()
    link = f'href="/surveys/campaigns/new/?customer={customer.pk}"'
    client.force_login(manager)
    assert link in page(client, customer)[1]
    client.force_login(support_user)
    assert link not in page(client, customer)[1]
