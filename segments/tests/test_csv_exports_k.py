"""?export=csv on the bucket list, the ROI dashboard table and the cohort triangle."""

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest

from crm.tests.factories import CustomerFactory
from segments.models import CurrentMembership, JobRun, RoiSnapshot
from segments.tests.factories import BucketFactory

pytestmark = pytest.mark.django_db

DAY = dt.date(2026, 3, 31)


def read_csv(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_bucket_list_csv(client_support):
    bucket = BucketFactory(name="Whales", priority=3)
    CurrentMembership.objects.create(customer=CustomerFactory(), bucket=bucket, since=DAY)
    rows = read_csv(client_support.get("/segments/?export=csv"))
    assert rows[0] == [
        "Priority",
        "Bucket id",
        "Name",
        "Active",
        "Members",
        "Rules",
        "Rules version",
    ]
    assert rows[1][:5] == ["3", str(bucket.pk), "Whales", "yes", "1"]
    assert "7" in rows[1][5]  # the rule in words names its value


def test_bucket_list_links_export(client_support):
    assert b"export=csv" in client_support.get("/segments/").content


@pytest.mark.parametrize("url", ["/segments/", "/segments/roi/", "/segments/cohorts/"])
def test_csv_anonymous_redirected(client, url):
    response = client.get(url + "?export=csv")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("url", ["/segments/roi/", "/segments/cohorts/"])
def test_roi_csv_refused_to_support(client_support, url):
    assert client_support.get(url + "?export=csv").status_code == 403


def test_roi_csv_latest_snapshot(client_manager):
    bucket = BucketFactory(name="Whales")
    RoiSnapshot.objects.create(
        date=DAY - dt.timedelta(days=1), bucket=bucket, bucket_name="Old", customers=1
    )
    RoiSnapshot.objects.create(
        date=DAY,
        bucket=bucket,
        bucket_name="Whales",
        customers=4,
        revenue=Decimal("1000.00"),
        margin=Decimal("400.00"),
        cost_to_serve=Decimal("100.00"),
        contribution=Decimal("300.00"),
        roi=Decimal("3.0000"),
    )
    RoiSnapshot.objects.create(date=DAY, bucket=None, bucket_name="", customers=2)
    response = client_manager.get("/segments/roi/?export=csv")
    assert "roi-2026-03-31.csv" in response["Content-Disposition"]
    rows = read_csv(response)
    assert rows[0][:4] == ["Bucket id", "Bucket", "Customers", "Revenue"]
    assert len(rows) == 3
    assert rows[1][:8] == [
        str(bucket.pk),
        "Whales",
        "4",
        "1000.00",
        "400.00",
        "100.00",
        "300.00",
        "3.0000",
    ]
    assert rows[2][:3] == ["", "Unsegmented", "2"]


def test_roi_csv_without_snapshot(client_manager):
    rows = read_csv(client_manager.get("/segments/roi/?export=csv"))
    assert len(rows) == 1


def test_cohorts_csv(client_manager):
    JobRun.objects.create(
        as_of=DAY,
        mode="full",
        status="succeeded",
        reports={
            "cohorts": {
                "offsets": [0, 1],
                "rows": [
                    {
                        "cohort": "2026-01",
                        "customers": 5,
                        "cac": "12.50",
                        "recovered": 1,
                        "cells": ["-3.00", "20.00"],
                    }
                ],
            }
        },
    )
    rows = read_csv(client_manager.get("/segments/cohorts/?export=csv"))
    assert rows[0] == [
        "Cohort",
        "Customers",
        "Avg. CAC",
        "Recovered in month",
        "Month 0",
        "Month 1",
    ]
    # A negative number is text starting with "-": the helper guards it like a formula.
    assert rows[1] == ["2026-01", "5", "12.50", "1", "'-3.00", "20.00"]


def test_roi_pages_link_exports(client_manager):
    for url in ("/segments/roi/", "/segments/cohorts/"):
        assert b"export=csv" in client_manager.get(url).content


def test_bucket_list_csv_constant_queries(client_support, django_assert_max_num_queries):
    for _ in range(10):
        BucketFactory()
    with django_assert_max_num_queries(6):
        rows = read_csv(client_support.get("/segments/?export=csv"))
    assert len(rows) == 11
