"""The bucket-rule field latest_nps_category, registered by surveys into segments' registry."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from crm.tests.factories import CustomerFactory
from segments import rules
from segments.models import CurrentMembership
from segments.selectors import customers_for_rules
from segments.services import memberships_refresh
from segments.tests.factories import BucketFactory
from surveys import rule_fields
from surveys.tests.survey_helpers import make_survey
from surveys.tests.test_nps_in_snapshot import answer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def registered():
    # Registered at startup by SurveysConfig.ready(); a registry test elsewhere may remove
    # it again, so make sure (registering is idempotent).
    rule_fields.register()


def rule(operator, value=None):
    condition = {"field": "latest_nps_category", "operator": operator}
    if value is not None:
        condition["value"] = value
    return {"op": "and", "conditions": [condition]}


def matching(tree, as_of=None):
    q = rules.compile_rules(tree)
    qs = customers_for_rules(as_of=as_of or timezone.localdate()).filter(q)
    return set(qs.values_list("pk", flat=True))


def test_startup_registers_the_field():
    from django.apps import apps

    del rules.FIELDS["latest_nps_category"]
    apps.get_app_config("surveys").ready()
    assert rules.FIELDS["latest_nps_category"].choice_values == ("promoter", "passive", "detractor")


def test_category_of_the_latest_answer():
    survey = make_survey(["nps", "csat"])
    now_promoter = CustomerFactory()
    answer(survey, now_promoter, nps=2, days_ago=20)
    answer(survey, now_promoter, nps=9, days_ago=2)
    now_detractor = CustomerFactory()
    answer(survey, now_detractor, nps=10, days_ago=20)
    answer(survey, now_detractor, nps=6, days_ago=2)
    passive = CustomerFactory()
    answer(survey, passive, nps=7)
    silent = CustomerFactory()
    answer(survey, silent, csat=5)  # answered, but skipped the NPS question

    assert matching(rule("=", "promoter")) == {now_promoter.pk}
    assert matching(rule("=", "detractor")) == {now_detractor.pk}
    assert matching(rule("in", ["passive", "promoter"])) == {passive.pk, now_promoter.pk}
    assert matching(rule("is empty")) == {silent.pk}


def test_answers_after_the_evaluation_date_do_not_count():
    survey = make_survey(["nps"])
    customer = CustomerFactory()
    answer(survey, customer, nps=0, days_ago=30)
    answer(survey, customer, nps=10, days_ago=1)
    ten_days_ago = timezone.localdate() - dt.timedelta(days=10)
    assert matching(rule("=", "detractor"), as_of=ten_days_ago) == {customer.pk}
    assert matching(rule("=", "promoter")) == {customer.pk}


def test_unknown_category_is_refused():
    with pytest.raises(ValidationError) as exc:
        rules.compile_rules(rule("=", "fan"))
    assert "not one of" in exc.value.messages[0]


def test_bucket_of_detractors_via_membership_refresh():
    bucket = BucketFactory(name="Unhappy voices", rules=rule("=", "detractor"))
    survey = make_survey(["nps"])
    unhappy, happy = CustomerFactory(), CustomerFactory()
    answer(survey, unhappy, nps=3)
    answer(survey, happy, nps=9)
    memberships_refresh(as_of=timezone.localdate())
    assert CurrentMembership.objects.get(customer=unhappy).bucket == bucket
    assert CurrentMembership.objects.get(customer=happy).bucket is None
    assert "Latest NPS category" in CurrentMembership.objects.get(customer=unhappy).reason
