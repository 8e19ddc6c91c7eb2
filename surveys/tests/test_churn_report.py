import datetime as dt
from decimal import Decimal

import pytest

from segments.models import Bucket, CurrentMembership
from surveys import churn_services
from surveys.churn_selectors import churn_report
from surveys.models import ReasonCategory
from surveys.tests.churn_helpers import churned, metrics, reason

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_case(manager):
    """Four interviews: three price (two in March, one in April), one service; buckets."""
    vip = Bucket.objects.create(name="VIP", priority=1)
    price = reason()
    cheaper = reason(code="cheaper", label_en="Cheaper elsewhere")
    service = reason(code="svc", category=ReasonCategory.SERVICE, label_en="Rude staff")
    rows = [
        (price, "2026-03-03", "100.00", vip, "Voucher", "accepted", 8, [service]),
        (price, "2026-03-20", "50.00", None, "Voucher", "declined", 2, []),
        (cheaper, "2026-04-02", "25.50", vip, "", "none", None, [service]),
        (service, "2026-04-15", None, vip, "Call", "pending", 5, []),
    ]
    for primary, day, contribution, bucket, offer, outcome, likely, secondary in rows:
        customer = churned()
        if contribution is not None:
            metrics(customer, contribution)
        CurrentMembership.objects.create(customer=customer, bucket=bucket, since="2026-01-01")
        churn_services.churn_interview_record(
            customer=customer,
            interviewer=manager,
            recorded_by=manager,
            interviewed_on=dt.date.fromisoformat(day),
            channel="phone",
            primary_reason=primary,
            secondary_reasons=secondary,
            winback_offer=offer,
            winback_outcome=outcome,
            likelihood_to_return=likely,
        )
    return {"vip": vip, "price": price, "cheaper": cheaper, "service": service}


def test_report_figures_on_a_small_case(small_case, django_assert_max_num_queries):
    with django_assert_max_num_queries(9):
        report = churn_report()

    assert report.interviews == 4
    assert report.lost_contribution == Decimal("175.50")
    assert report.avg_likelihood == pytest.approx(5.0)

    by_category = {row["category"]: row for row in report.by_category}
    assert by_category["price"]["interviews"] == 3
    assert by_category["price"]["lost_contribution"] == Decimal("175.50")
    assert by_category["price"]["share"] == 75.0
    assert by_category["service"]["lost_contribution"] == Decimal("0")

    by_reason = {row["reason"].code: row for row in report.by_reason}
    assert [row["reason"].code for row in report.by_reason] == ["price", "cheaper", "svc"]
    assert by_reason["price"]["interviews"] == 2
    assert by_reason["price"]["lost_contribution"] == Decimal("150.00")
    assert by_reason["svc"]["interviews"] == 1
    assert by_reason["svc"]["secondary"] == 2

    # Cross table: columns are VIP then Unsegmented.
    assert [b["name"] for b in report.buckets] == ["VIP", None]
    cross = {row["label"]: row["cells"] for row in report.cross}
    assert cross["Price"] == [2, 1]
    assert cross["Service"] == [1, 0]

    assert report.months == ["2026-03", "2026-04"]
    series = {s["category"]: s["counts"] for s in report.month_series}
    assert series == {"price": [2, 1], "service": [0, 1]}

    outcomes = {row["outcome"]: row["interviews"] for row in report.winback}
    assert outcomes == {"none": 1, "pending": 1, "accepted": 1, "declined": 1}
    assert report.winback_acceptance == 50.0


def test_report_date_range_filters_interviews(small_case):
    report = churn_report(date_from=dt.date(2026, 4, 1), date_to=dt.date(2026, 4, 30))
    assert report.interviews == 2
    assert report.months == ["2026-04"]
    assert report.winback_acceptance is None  # nothing decided: empty, not 0


def test_report_page_renders_figures_and_chart(client_manager, small_case):
    response = client_manager.get("/churn/", {"date_from": "2026-03-01", "date_to": "2026-03-31"})
    assert response.status_code == 200
    body = response.content.decode()
    assert response.context["report"].interviews == 2
    assert "chart-4.6.1.umd.min.js" in body
    assert 'id="churn-chart-data"' in body
    assert "150.00" in body


def test_report_with_bad_dates_shows_errors_not_500(client_manager, small_case):
    response = client_manager.get("/churn/", {"date_from": "2026-99-01", "date_to": "x"})
    assert response.status_code == 200
    assert response.context["form"].errors
    response = client_manager.get("/churn/", {"date_from": "2026-05-01", "date_to": "2026-04-01"})
    assert "date_to" in response.context["form"].errors


def test_rewording_keeps_report_grouped_by_stable_code(small_case, manager):
    price = small_case["price"]
    churn_services.reason_code_update(
        reason=price, category="price", label_en="Price too high", label_ko="", is_active=True
    )
    report = churn_report()
    by_reason = {row["reason"].code: row for row in report.by_reason}
    assert by_reason["price"]["interviews"] == 2
    assert by_reason["price"]["reason"].label == "Price too high"


def test_empty_report_renders(client_manager):
    response = client_manager.get("/churn/")
    assert response.status_code == 200
    assert response.context["report"].interviews == 0
    assert "No interviews in this period." in response.content.decode()


def test_report_page_is_constant_in_queries(
    client_manager, small_case, django_assert_max_num_queries
):
    with django_assert_max_num_queries(14):
        response = client_manager.get("/churn/")
    assert response.status_code == 200
    assert response.context["report"].interviews == 4
