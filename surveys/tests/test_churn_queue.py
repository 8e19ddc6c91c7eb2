import csv
import io

import pytest
from django.utils import timezone

from crm.models import CustomerStatus
from crm.tests.factories import CustomerFactory, SupportUserFactory
from segments.models import Bucket, CurrentMembership
from surveys import churn_selectors, churn_services
from surveys.tests.churn_helpers import churned, metrics, reason

pytestmark = pytest.mark.django_db

URL = "/churn/queue/"


def _ids(response):
    """The queue as shown: the metrics-ordered table, then the customers without metrics."""
    ids = [row.record.pk for row in response.context["table"].page.object_list]
    rest = response.context.get("table_without_metrics")
    return ids + ([row.record.pk for row in rest.page.object_list] if rest else [])


def test_queue_orders_by_lost_lifetime_contribution_without_metrics_last(client_support):
    small = churned(last_name="Small")
    metrics(small, "10.00")
    big = churned(last_name="Big")
    metrics(big, "900.50")
    negative = churned(last_name="Negative")
    metrics(negative, "-40")
    no_metrics = churned(last_name="Unknown")
    middle = churned(last_name="Middle")
    metrics(middle, "300")

    response = client_support.get(URL)

    assert response.status_code == 200
    assert _ids(response) == [big.pk, middle.pk, small.pk, negative.pk, no_metrics.pk]
    assert "900.50" in response.content.decode()


def test_queue_holds_only_churned_or_cancelled_customers_without_interview(support_user):
    gone = churned()
    cancelled = CustomerFactory(status=CustomerStatus.ACTIVE, cancelled_at=timezone.now())
    CustomerFactory(status=CustomerStatus.ACTIVE)
    CustomerFactory(status=CustomerStatus.AT_RISK)
    interviewed = churned()
    churn_services.churn_interview_record(
        customer=interviewed,
        interviewer=support_user,
        recorded_by=support_user,
        interviewed_on=timezone.localdate(),
        channel="phone",
        primary_reason=reason(),
    )

    assert set(churn_selectors.churn_queue_all().values_list("pk", flat=True)) == {
        gone.pk,
        cancelled.pk,
    }


def test_queue_filters_by_owner_and_no_owner(client_support):
    owner = SupportUserFactory(username="owner1")
    mine = churned(owner=owner)
    churned(owner=SupportUserFactory(username="owner2"))
    orphan = churned(owner=None)

    assert _ids(client_support.get(URL, {"owner": owner.pk})) == [mine.pk]
    assert _ids(client_support.get(URL, {"owner": "null"})) == [orphan.pk]


def test_queue_filters_by_current_bucket(client_support):
    bucket = Bucket.objects.create(name="Lapsed VIPs", priority=1)
    inside = churned()
    CurrentMembership.objects.create(customer=inside, bucket=bucket, since=timezone.localdate())
    unsegmented = churned()
    CurrentMembership.objects.create(customer=unsegmented, bucket=None, since=timezone.localdate())

    response = client_support.get(URL, {"bucket": bucket.pk})
    assert _ids(response) == [inside.pk]
    assert "Lapsed VIPs" in response.content.decode()
    assert _ids(client_support.get(URL, {"bucket": "null"})) == [unsegmented.pk]


def test_unknown_filter_value_is_a_clear_error_not_a_500(client_support):
    churned()
    response = client_support.get(URL, {"owner": "999999"})
    assert response.status_code == 200
    assert _ids(response) == []
    assert "Select a valid choice" in response.content.decode()


def test_csv_export_streams_the_filtered_queue_in_order(client_support):
    owner = SupportUserFactory(username="owner1")
    low = churned(owner=owner, first_name="Low", last_name="L")
    metrics(low, "5")
    high = churned(owner=owner, first_name="High", last_name="H")
    metrics(high, "50")
    churned(owner=None)

    response = client_support.get(URL, {"owner": owner.pk, "export": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][0] == "Customer id"
    assert [r[0] for r in rows[1:]] == [str(high.pk), str(low.pk)]
    assert rows[1][6] == "50.00"
    assert rows[1][9] == "owner1"


def test_queue_is_constant_in_queries(client_support, django_assert_max_num_queries):
    bucket = Bucket.objects.create(name="B", priority=1)
    for i in range(30):
        customer = churned(owner=SupportUserFactory(username=f"o{i % 5}"))
        if i % 3:
            metrics(customer, i)
        CurrentMembership.objects.create(customer=customer, bucket=bucket, since="2026-01-01")
    with django_assert_max_num_queries(12):
        response = client_support.get(URL)
    assert response.status_code == 200
    assert len(_ids(response)) == 30


@pytest.mark.parametrize("params", [{"page": "x"}, {"page": "999"}, {"sort": "bogus"}])
def test_odd_paging_and_sorting_parameters_never_500(client_support, params):
    churned()
    response = client_support.get(URL, params)
    assert response.status_code in (200, 404)


@pytest.mark.parametrize("sort", ["name", "-last_order_at", "cancelled_at", "lost_contribution"])
def test_sortable_columns_sort(client_support, sort):
    a = churned(last_name="Aardvark")
    metrics(a, "1")
    b = churned(last_name="Zebra")
    response = client_support.get(URL, {"sort": sort})
    assert response.status_code == 200
    assert set(_ids(response)) == {a.pk, b.pk}


def test_ascending_lost_contribution_still_puts_unknown_last(client_support):
    low = churned()
    metrics(low, "1")
    high = churned()
    metrics(high, "99")
    unknown = churned()
    response = client_support.get(URL, {"sort": "lost_contribution"})
    assert _ids(response) == [low.pk, high.pk, unknown.pk]


def test_csv_export_with_a_bad_filter_has_only_the_header(client_support):
    churned()
    response = client_support.get(URL, {"owner": "999999", "export": "csv"})
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 1


def test_customers_without_metrics_show_only_after_the_last_page(client_support):
    for i in range(51):
        metrics(churned(), i)
    unknown = churned()

    first = client_support.get(URL)
    assert "table_without_metrics" not in first.context
    assert len(first.context["table"].page.object_list) == 50
    second = client_support.get(URL, {"page": 2})
    assert _ids(second)[-1] == unknown.pk
    assert "Without metrics yet" in second.content.decode()


def test_queue_parts_together_are_the_whole_queue():
    with_metrics = churned()
    metrics(with_metrics, 3)
    without = churned()
    assert list(churn_selectors.churn_queue().values_list("pk", flat=True)) == [with_metrics.pk]
    assert list(churn_selectors.churn_queue_without_metrics().values_list("pk", flat=True)) == [
        without.pk
    ]
    assert list(churn_selectors.churn_queue_all().values_list("pk", flat=True)) == [
        with_metrics.pk,
        without.pk,
    ]
