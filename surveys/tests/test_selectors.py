"""The SQL scores of the screens agree with the pure formulas on domain.md's test vectors."""

import pytest

from crm.tests.factories import CustomerFactory
from surveys import scores, selectors
from surveys.models import Answer, Invitation, Response

from .survey_helpers import make_campaign, make_survey

pytestmark = pytest.mark.django_db


def _responses(campaign, kind, counts):
    question = campaign.survey.questions.get(kind=kind)
    customers = CustomerFactory.create_batch(sum(counts.values()))
    invitations = Invitation.objects.bulk_create(
        Invitation(campaign=campaign, customer=c) for c in customers
    )
    responses = Response.objects.bulk_create(
        Response(invitation=i, campaign=campaign, survey=campaign.survey, customer_id=i.customer_id)
        for i in invitations
    )
    values = [v for v, n in counts.items() for _ in range(n)]
    Answer.objects.bulk_create(
        Answer(response=r, question=question, kind=kind, value_int=v)
        for r, v in zip(responses, values, strict=True)
    )


def test_sql_scores_match_the_formulas_on_the_vectors():
    survey = make_survey(kinds=["nps", "csat", "ces"], required=False)
    campaign = make_campaign(survey)
    csat = {5: 42, 4: 32, 3: 10, 2: 9, 1: 14}
    ces = {7: 5, 5: 5, 4: 4, 1: 6}
    nps = {10: 3, 9: 2, 8: 2, 7: 2, 2: 1}
    _responses(campaign, "csat", csat)
    _responses(campaign, "ces", ces)
    _responses(campaign, "nps", nps)
    summary = selectors.survey_scores(survey=survey)
    assert summary.csat == scores.csat(csat) == 69 and summary.csat_answers == 107
    assert summary.ces == scores.ces(ces) == 50 and summary.ces_mean == 4.1
    assert summary.nps == scores.nps(nps) == 40 and summary.nps_answers == 10
    # Each response answered one question only: the skipped ones are in no denominator.
    assert summary.responses == 107 + 20 + 10
