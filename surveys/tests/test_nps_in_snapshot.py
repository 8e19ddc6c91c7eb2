"""The nightly ROI snapshot's NPS per bucket, supplied by surveys through the provider hook."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from crm.tests.factories import CustomerFactory
from segments import jobs
from segments.models import RoiSnapshot
from segments.tests.factories import BucketFactory
from surveys.models import Answer, Response
from surveys.snapshot_nps import nps_for_snapshot
from surveys.tests.survey_helpers import make_campaign, make_invitation, make_survey

pytestmark = pytest.mark.django_db

HIGH_EFFORT = {"op": "and", "conditions": [{"field": "effort", "operator": ">=", "value": 7}]}
LOW_EFFORT = {"op": "and", "conditions": [{"field": "effort", "operator": "<=", "value": 2}]}


@pytest.fixture
def survey():
    return make_survey(["nps", "csat"])


def answer(survey, customer, *, nps=None, csat=None, days_ago=1):
    """A finished response of `customer` with the given scores (None = skipped)."""
    campaign = make_campaign(survey)
    invitation, _token = make_invitation(campaign, customer)
    response = Response.objects.create(
        invitation=invitation,
        campaign=campaign,
        survey=survey,
        customer=customer,
        finished_at=timezone.now() - dt.timedelta(days=days_ago),
    )
    questions = {q.kind: q for q in survey.questions.all()}
    for kind, value in (("nps", nps), ("csat", csat)):
        if value is not None:
            Answer.objects.create(
                response=response, question=questions[kind], kind=kind, value_int=value
            )
    return response


def snapshot_nps(bucket):
    return RoiSnapshot.objects.get(date=timezone.localdate(), bucket=bucket).nps


def test_provider_is_registered_by_surveys_app():
    assert jobs._nps_provider is nps_for_snapshot


def test_job_writes_nps_40_for_5_promoters_4_passives_1_detractor(survey):
    loyal = BucketFactory(name="Loyal", priority=1, rules=HIGH_EFFORT)
    quiet = BucketFactory(name="Quiet", priority=2, rules=LOW_EFFORT)
    scores = [10, 9, 9, 10, 9, 7, 8, 7, 8, 3]  # 5 promoters, 4 passives, 1 detractor
    for score in scores:
        answer(survey, CustomerFactory(service_effort=9), nps=score)
    # Left out of Loyal's denominator: a skipped NPS question and an answer older than the
    # 365-day window.
    answer(survey, CustomerFactory(service_effort=9), csat=5)
    answer(survey, CustomerFactory(service_effort=9), nps=0, days_ago=400)
    # Unsegmented (effort 5 matches neither bucket): one detractor.
    answer(survey, CustomerFactory(service_effort=5), nps=2)
    CustomerFactory(service_effort=1)  # Quiet: a member who never answered

    run = jobs.roi_recalculate(full=True)

    assert run.status == "succeeded", run.error
    assert snapshot_nps(loyal) == Decimal("40.00")
    assert snapshot_nps(None) == Decimal("-100.00")
    assert snapshot_nps(quiet) is None  # no answers: empty, not zero


def test_nps_is_to_two_decimals_and_follows_current_bucket(survey):
    loyal = BucketFactory(name="Loyal", priority=1, rules=HIGH_EFFORT)
    for score in (10, 5, 8):  # 1 promoter, 1 detractor, 1 passive of 3 -> 0
        answer(survey, CustomerFactory(service_effort=9), nps=score)
    answer(survey, CustomerFactory(service_effort=9), nps=9)  # now 2 - 1 of 4 -> 25
    extra = CustomerFactory(service_effort=9)
    answer(survey, extra, nps=9)  # 3 - 1 of 5 -> 40
    jobs.roi_recalculate(full=True)
    assert snapshot_nps(loyal) == Decimal("40.00")

    extra.service_effort = 5  # moves to Unsegmented: 2 - 1 of 4 -> 25
    extra.save(update_fields=["service_effort", "updated_at"])
    jobs.roi_recalculate(full=True)
    assert snapshot_nps(loyal) == Decimal("25.00")
    assert snapshot_nps(None) == Decimal("100.00")
    assert RoiSnapshot.objects.filter(date=timezone.localdate()).count() == 2  # replaced


def test_nps_rounds_thirds_to_two_decimals(survey):
    loyal = BucketFactory(name="Loyal", priority=1, rules=HIGH_EFFORT)
    for score in (10, 8, 8):  # 1 promoter of 3 -> 33.33
        answer(survey, CustomerFactory(service_effort=9), nps=score)
    jobs.roi_recalculate(full=True)
    assert snapshot_nps(loyal) == Decimal("33.33")


def test_without_provider_the_column_stays_empty(survey):
    loyal = BucketFactory(name="Loyal", priority=1, rules=HIGH_EFFORT)
    answer(survey, CustomerFactory(service_effort=9), nps=10)
    jobs.register_nps_provider(None)
    try:
        jobs.roi_recalculate(full=True)
    finally:
        jobs.register_nps_provider(nps_for_snapshot)
    assert snapshot_nps(loyal) is None
    jobs.roi_recalculate(full=True)
    assert snapshot_nps(loyal) == Decimal("100.00")


def test_roi_dashboard_shows_nps_column(client_manager, survey):
    loyal = BucketFactory(name="Loyal", priority=1, rules=HIGH_EFFORT)
    for score in (10, 9, 9, 10, 9, 7, 8, 7, 8, 3):
        answer(survey, CustomerFactory(service_effort=9), nps=score)
    jobs.roi_recalculate(full=True)
    response = client_manager.get("/segments/roi/")
    assert response.status_code == 200
    table = response.context["table"]
    row = next(r for r in table.rows if r.record.bucket_id == loyal.pk)
    assert row.get_cell("nps") == "40"
    assert "NPS" in response.content.decode()
