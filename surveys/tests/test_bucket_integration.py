"""Surveys' "bucket" audience and the churn queue's bucket filter against segments' real
membership (memberships_refresh writes CurrentMembership and the history)."""

import datetime as dt

import pytest

from crm.models import CustomerStatus
from crm.tests.factories import CustomerFactory
from segments.services import memberships_refresh
from segments.tests.factories import BucketFactory
from surveys.models import AudienceKind, Campaign
from surveys.selectors import buckets as campaign_buckets
from surveys.selectors import campaign_audience, nps_by_bucket
from surveys.tests.churn_helpers import metrics
from surveys.tests.survey_helpers import make_campaign, make_survey

pytestmark = pytest.mark.django_db

HIGH_EFFORT = {"op": "and", "conditions": [{"field": "effort", "operator": ">=", "value": 7}]}
DAY1, DAY2 = dt.date(2026, 1, 1), dt.date(2026, 2, 1)


@pytest.fixture
def gold():
    return BucketFactory(name="Gold", priority=1, rules=HIGH_EFFORT)


def test_campaign_bucket_audience_is_the_current_members(gold):
    stays = CustomerFactory(service_effort=9)
    leaves = CustomerFactory(service_effort=9)
    CustomerFactory(service_effort=2)  # never in Gold
    memberships_refresh(as_of=DAY1)
    leaves.service_effort = 1
    leaves.save(update_fields=["service_effort", "updated_at"])
    memberships_refresh(as_of=DAY2)  # leaves Gold: history kept, no longer a member

    campaign = make_campaign(audience_kind=AudienceKind.BUCKET, audience_bucket_id=gold.pk)
    assert list(campaign_audience(campaign=campaign).values_list("pk", flat=True)) == [stays.pk]
    assert (gold.pk, "Gold") in campaign_buckets()


def test_campaign_form_creates_a_bucket_campaign(client_manager, gold):
    member = CustomerFactory(service_effort=9)
    memberships_refresh(as_of=DAY1)
    survey = make_survey(["nps"])
    response = client_manager.post(
        "/surveys/campaigns/new/",
        {
            "survey": survey.pk,
            "name": "Gold check",
            "audience_kind": "bucket",
            "audience_bucket_id": gold.pk,
            "expiry_days": 30,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    campaign = Campaign.objects.get(name="Gold check")
    assert campaign.audience_bucket_id == gold.pk
    assert list(campaign_audience(campaign=campaign)) == [member]


def test_campaign_form_refuses_an_unknown_bucket(client_manager, gold):
    survey = make_survey(["nps"])
    response = client_manager.post(
        "/surveys/campaigns/new/",
        {
            "survey": survey.pk,
            "name": "Nobody",
            "audience_kind": "bucket",
            "audience_bucket_id": gold.pk + 999,
            "expiry_days": 30,
        },
    )
    assert response.status_code == 400
    assert not Campaign.objects.filter(name="Nobody").exists()


def _queue_ids(response):
    ids = [row.record.pk for row in response.context["table"].rows]
    rest = response.context.get("table_without_metrics")
    if rest is not None:
        ids += [row.record.pk for row in rest.rows]
    return ids


def test_churn_queue_bucket_filter_uses_current_membership(client_support, gold):
    in_gold = CustomerFactory(service_effort=9, status=CustomerStatus.CHURNED)
    unsegmented = CustomerFactory(service_effort=2, status=CustomerStatus.CHURNED)
    was_gold = CustomerFactory(service_effort=9, status=CustomerStatus.CHURNED)
    for customer, contribution in ((in_gold, 300), (unsegmented, 200), (was_gold, 100)):
        metrics(customer, contribution)
    memberships_refresh(as_of=DAY1)
    was_gold.service_effort = 1
    was_gold.save(update_fields=["service_effort", "updated_at"])
    memberships_refresh(as_of=DAY2)

    everyone = client_support.get("/churn/queue/")
    assert _queue_ids(everyone) == [in_gold.pk, unsegmented.pk, was_gold.pk]
    response = client_support.get(f"/churn/queue/?bucket={gold.pk}")
    assert response.status_code == 200
    assert _queue_ids(response) == [in_gold.pk]
    response = client_support.get("/churn/queue/?bucket=null")
    assert _queue_ids(response) == [unsegmented.pk, was_gold.pk]


def test_nps_by_bucket_groups_by_current_bucket(gold):
    """The survey results' per-bucket table reads the same membership."""
    from surveys.tests.test_nps_in_snapshot import answer

    survey = make_survey(["nps", "csat"])
    member, other = CustomerFactory(service_effort=9), CustomerFactory(service_effort=2)
    memberships_refresh(as_of=DAY1)
    answer(survey, member, nps=10)
    answer(survey, other, nps=0)
    rows = {row["bucket_name"]: row["nps"] for row in nps_by_bucket(survey=survey)}
    assert rows == {"Gold": 100, "Unsegmented": -100}
