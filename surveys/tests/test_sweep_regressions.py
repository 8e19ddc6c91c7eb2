"""Regressions found by the URL sweep (crm/tests/test_url_sweep.py): records whose creator's
account was deleted (created_by SET NULL) must stay editable, never a 500 or a blocked form."""

import pytest
from django.utils import timezone

from crm.tests.factories import ManagerFactory, SupportUserFactory
from surveys import churn_services
from surveys.models import ChurnInterview, Survey
from surveys.tests.churn_helpers import churned, reason

pytestmark = pytest.mark.django_db


def test_survey_whose_creator_was_deleted_can_still_be_edited(client_manager):
    creator = ManagerFactory(username="gone")
    survey = Survey.objects.create(title_en="Old title", created_by=creator)
    creator.delete()

    response = client_manager.post(
        f"/surveys/{survey.pk}/edit/", {"title_en": "New title", "title_ko": "", "intro_en": ""}
    )

    assert response.status_code == 302
    survey.refresh_from_db()
    assert survey.title_en == "New title"
    assert survey.created_by is None


def test_churn_interview_whose_recorder_was_deleted_can_still_be_edited():
    interviewer = SupportUserFactory(username="interviewer")
    recorder = SupportUserFactory(username="recorder")
    price = reason()
    interview = churn_services.churn_interview_record(
        customer=churned(),
        interviewer=interviewer,
        recorded_by=recorder,
        interviewed_on=timezone.localdate(),
        channel="phone",
        primary_reason=price,
    )
    recorder.delete()
    interview.refresh_from_db()

    churn_services.churn_interview_update(
        interview=interview,
        interviewer=interviewer,
        interviewed_on=timezone.localdate(),
        channel="phone",
        primary_reason=price,
        verbatim="Prices went up",
    )

    assert ChurnInterview.objects.get(pk=interview.pk).verbatim == "Prices went up"


def test_churn_interview_can_be_recorded_without_a_recorder():
    """recorded_by is typed `User | None`: None must not fail validation."""
    interview = churn_services.churn_interview_record(
        customer=churned(),
        interviewer=SupportUserFactory(username="interviewer"),
        recorded_by=None,
        interviewed_on=timezone.localdate(),
        channel="phone",
        primary_reason=reason(),
    )
    assert interview.created_by is None


@pytest.mark.parametrize("action", ["submit", "save"])
def test_a_null_byte_in_a_text_answer_is_refused_with_a_message(client, action):
    """Found by the sweep: PostgreSQL cannot store NUL in text or jsonb (it was a 500)."""
    from surveys.models import Response, ResponseDraft
    from surveys.tests.survey_helpers import (
        full_answers,
        make_campaign,
        make_invitation,
        make_survey,
    )
    from surveys.tests.survey_helpers import open_link as open_survey_link

    survey = make_survey(["nps", "text"])
    invitation, token = make_invitation(make_campaign(survey))
    open_survey_link(client, token)
    data = full_answers(survey, text="fine\x00 thanks")
    data["action"] = action

    response = client.post("/s/answer/", data)

    assert response.status_code == 400
    assert "Null characters are not allowed." in response.content.decode()
    assert not Response.objects.filter(invitation=invitation).exists()
    assert not ResponseDraft.objects.filter(invitation=invitation).exists()
