"""The churn interview list exports its filtered rows as a streamed, formula-safe CSV."""

import csv
import io

import pytest
from django.utils import timezone

from crm.tests.factories import SupportUserFactory
from surveys import churn_services
from surveys.models import ReasonCategory
from surveys.tests.churn_helpers import churned, reason

pytestmark = pytest.mark.django_db


def _record(primary, **kwargs):
    user = SupportUserFactory()
    return churn_services.churn_interview_record(
        customer=churned(),
        interviewer=user,
        recorded_by=user,
        interviewed_on=timezone.localdate(),
        channel="phone",
        primary_reason=primary,
        **kwargs,
    )


def _rows(response):
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


def test_export_follows_the_filters_and_neutralises_formulas(client_support):
    price = reason()
    service = reason(code="service", category=ReasonCategory.SERVICE, label_en="Rude staff")
    kept = _record(price, verbatim="=HYPERLINK(evil)", competitor="ShopCo")
    _record(service)

    rows = _rows(client_support.get("/churn/interviews/", {"export": "csv", "category": "price"}))

    assert len(rows) == 2  # header + the one price interview
    assert rows[1][1] == str(kept.customer_id)
    assert rows[1][6] == "Too expensive"
    assert rows[1][7] == "ShopCo"
    assert rows[1][-1] == "'=HYPERLINK(evil)"


def test_export_with_invalid_filters_is_empty_not_an_error(client_support):
    _record(reason())
    rows = _rows(client_support.get("/churn/interviews/", {"export": "csv", "category": "nope"}))
    assert len(rows) == 1


def test_export_needs_the_permission(client):
    response = client.get("/churn/interviews/", {"export": "csv"})
    assert response.status_code == 302
    assert response.url.startswith("/login/")


def test_export_is_constant_in_queries(client_support, django_assert_max_num_queries):
    price = reason()
    for _ in range(5):
        _record(price)
    with django_assert_max_num_queries(6):
        assert len(_rows(client_support.get("/churn/interviews/", {"export": "csv"}))) == 6
