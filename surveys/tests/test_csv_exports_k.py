"""?export=csv on the survey list, survey results (per campaign and per bucket), the churn
report tables and the reason codes list."""

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest

from segments.models import CurrentMembership
from segments.tests.factories import BucketFactory
from surveys import churn_services
from surveys.models import Answer, Response
from surveys.tests.churn_helpers import churned, metrics, reason
from surveys.tests.survey_helpers import make_campaign, make_invitation, make_survey

pytestmark = pytest.mark.django_db

DAY = dt.date(2026, 2, 10)


def read_csv(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def answered(campaign, *, nps):
    invitation, _token = make_invitation(campaign)
    response = Response.objects.create(
        invitation=invitation,
        campaign=campaign,
        survey=campaign.survey,
        customer=invitation.customer,
        unhappy=nps <= 6,
    )
    question = campaign.survey.questions.get(kind="nps")
    Answer.objects.create(response=response, question=question, kind="nps", value_int=nps)
    return response


# --- surveys ------------------------------------------------------------------------------


def test_survey_list_csv(client_support):
    survey = make_survey(kinds=["nps", "text"], title="=Spring check")
    make_campaign(survey)
    rows = read_csv(client_support.get("/surveys/?export=csv"))
    assert rows[0] == ["Survey id", "Survey", "Questions", "Campaigns", "Responses", "Created"]
    assert rows[1][:5] == [str(survey.pk), "'=Spring check", "2", "1", "0"]


def test_survey_list_links_export(client_support):
    assert b"export=csv" in client_support.get("/surveys/").content


def test_results_csv_per_campaign(client_support):
    survey = make_survey(kinds=["nps"])
    campaign = make_campaign(survey, name="Spring")
    answered(campaign, nps=10)
    make_invitation(campaign)  # sent, not answered
    rows = read_csv(client_support.get(f"/surveys/{survey.pk}/results/?export=csv"))
    assert rows[0][:2] == ["Campaign id", "Campaign"]
    assert len(rows) == 2
    assert rows[1][0:2] == [str(campaign.pk), "Spring"]
    assert rows[1][4:] == ["2", "0", "1", "50"]


def test_results_csv_per_bucket(client_support):
    survey = make_survey(kinds=["nps"])
    campaign = make_campaign(survey)
    bucket = BucketFactory(name="Whales")
    promoter = answered(campaign, nps=10)
    CurrentMembership.objects.create(customer=promoter.customer, bucket=bucket, since=DAY)
    answered(campaign, nps=2)  # Unsegmented
    rows = read_csv(client_support.get(f"/surveys/{survey.pk}/results/?export=csv&table=buckets"))
    assert rows[0] == ["Bucket id", "Bucket", "Responses", "NPS", "NPS answers", "CSAT", "CES"]
    by_name = {row[1]: row for row in rows[1:]}
    assert by_name["Whales"][:5] == [str(bucket.pk), "Whales", "1", "100", "1"]
    # A number stays a number (only text cells are guarded against formulas).
    assert by_name["Unsegmented"][2:5] == ["1", "-100", "1"]


def test_results_page_links_both_exports(client_support):
    survey = make_survey(kinds=["nps"])
    html = client_support.get(f"/surveys/{survey.pk}/results/").content.decode()
    assert "table=buckets" in html and html.count("export=csv") >= 2


@pytest.mark.parametrize(
    "path", ["/surveys/", "/surveys/{pk}/results/", "/churn/reasons/", "/churn/"]
)
def test_csv_anonymous_redirected(client, path):
    survey = make_survey(kinds=["nps"])
    response = client.get(path.format(pk=survey.pk) + "?export=csv")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


# --- churn -------------------------------------------------------------------------------


@pytest.fixture
def interviews(manager):
    price = reason(code="price", label_en="=Too expensive")
    customer = churned()
    metrics(customer, "250.00")
    churn_services.churn_interview_record(
        customer=customer,
        interviewer=manager,
        recorded_by=manager,
        interviewed_on=DAY,
        channel="phone",
        primary_reason=price,
        likelihood_to_return=4,
    )
    return price


def test_reason_codes_csv(client_support, interviews):
    rows = read_csv(client_support.get("/churn/reasons/?export=csv"))
    assert rows[0][:3] == ["Code", "Category", "Label (English)"]
    assert rows[1] == ["price", "Price", "'=Too expensive", "", "yes", "1", "0"]


def test_reason_codes_page_links_export(client_support):
    assert b"export=csv" in client_support.get("/churn/reasons/").content


def test_churn_report_csv_is_for_managers(client_support):
    assert client_support.get("/churn/?export=csv").status_code == 403


def test_churn_report_reasons_csv(client_manager, interviews):
    rows = read_csv(client_manager.get("/churn/?export=csv&table=reasons"))
    assert rows[0][:2] == ["Reason code", "Reason (current wording)"]
    assert rows[1] == ["price", "'=Too expensive", "Price", "yes", "1", "0", "250.00", "4.0"]


def test_churn_report_categories_csv(client_manager, interviews):
    rows = read_csv(client_manager.get("/churn/?export=csv&table=categories"))
    assert rows[1] == ["Price", "1", "100.0", "250.00"]


def test_churn_report_cross_and_winback_csv(client_manager, interviews):
    cross = read_csv(client_manager.get("/churn/?export=csv&table=cross"))
    assert cross[0][0] == "Category" and cross[0][-2:] == ["Unsegmented", "Total"]
    assert cross[1][0] == "Price" and cross[1][-2:] == ["1", "1"]
    winback = read_csv(client_manager.get("/churn/?export=csv&table=winback"))
    assert winback[0] == ["Outcome", "Interviews", "Share (%)"]
    assert any(row[1] == "1" for row in winback[1:])


def test_churn_report_csv_keeps_the_date_filter(client_manager, interviews):
    rows = read_csv(client_manager.get("/churn/?export=csv&date_from=2026-03-01"))
    assert len(rows) == 1  # the only interview is before the period


@pytest.mark.parametrize(
    ("query", "message"),
    [("table=nope", "table"), ("date_from=2026-03-01&date_to=2026-01-01", "date_to")],
)
def test_churn_report_csv_bad_input_is_400(client_manager, query, message):
    response = client_manager.get(f"/churn/?export=csv&{query}")
    assert response.status_code == 400
    assert message in response.content.decode()


def test_churn_report_page_links_exports(client_manager):
    html = client_manager.get("/churn/").content.decode()
    for table in ("reasons", "categories", "cross", "winback"):
        assert f"table={table}" in html


def test_churn_report_lost_is_decimal(interviews):
    from surveys.churn_selectors import churn_report

    assert churn_report().lost_contribution == Decimal("250.00")


def test_list_csvs_constant_queries(client_support, django_assert_max_num_queries):
    for n in range(10):
        make_campaign(make_survey(kinds=["nps"], title=f"S{n}"))
        reason(code=f"code-{n}", label_en=f"Reason {n}")
    with django_assert_max_num_queries(6):
        surveys = read_csv(client_support.get("/surveys/?export=csv"))
    with django_assert_max_num_queries(6):
        reasons = read_csv(client_support.get("/churn/reasons/?export=csv"))
    assert len(surveys) == 11 and len(reasons) == 11


def test_churn_report_csv_constant_queries(
    client_manager, interviews, django_assert_max_num_queries
):
    with django_assert_max_num_queries(16):
        rows = read_csv(client_manager.get("/churn/?export=csv"))
    assert len(rows) == 2
