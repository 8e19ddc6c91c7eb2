"""/my/: the follow-up queue in the order of domain.md "The support queue" (bucket ROI, value
decile, influence, age), the reason shown per row, and the managers' unassigned queue."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm.models import CustomerMetrics, FollowUp, FollowUpStatus
from crm.tests.factories import CustomerFactory, FollowUpFactory, SupportUserFactory
from segments.models import CurrentMembership, RoiSnapshot
from segments.tests.factories import BucketFactory

pytestmark = pytest.mark.django_db

SNAPSHOT = dt.date(2026, 1, 10)


def customer_in(bucket, *, decile=None, influence=0, name="Kim"):
    customer = CustomerFactory(first_name=name, last_name="Test", influence=influence)
    CurrentMembership.objects.create(customer=customer, bucket=bucket, since=SNAPSHOT)
    if decile is not None:
        CustomerMetrics.objects.create(
            customer=customer, value_decile=decile, status=customer.status
        )
    return customer


def snapshot(bucket, roi, *, on=SNAPSHOT):
    return RoiSnapshot.objects.create(
        date=on,
        bucket=bucket,
        bucket_name=bucket.name if bucket else "",
        roi=Decimal(roi) if roi is not None else None,
    )


def follow_up(customer, user, *, days_old=0, **kwargs):
    return FollowUpFactory(
        customer=customer,
        assigned_to=user,
        created_at=timezone.now() - dt.timedelta(days=days_old),
        **kwargs,
    )


@pytest.fixture
def buckets():
    gold = BucketFactory(name="Gold", colour="#d4a017")
    bronze = BucketFactory(name="Bronze", colour="#8c5a2b")
    snapshot(gold, "2.5")
    snapshot(bronze, "0.4")
    snapshot(None, "1.1")  # Unsegmented
    snapshot(gold, "-3", on=SNAPSHOT - dt.timedelta(days=1))  # older: ignored
    return gold, bronze


def pks(response):
    return [f.pk for f in response.context["follow_ups"]]


# --- permissions -------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client):
    response = client.get("/my/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_support_sees_own_queue_but_not_the_unassigned_one(client_support, support_user):
    mine = follow_up(CustomerFactory(), support_user)
    follow_up(CustomerFactory(), None)
    follow_up(CustomerFactory(), SupportUserFactory())
    response = client_support.get("/my/")
    assert response.status_code == 200
    assert pks(response) == [mine.pk]
    assert "?queue=unassigned" not in response.content.decode()
    assert client_support.get("/my/?queue=unassigned").status_code == 403


def test_manager_has_the_unassigned_queue(client_manager, manager, buckets):
    gold, bronze = buckets
    follow_up(customer_in(gold), manager)
    low = follow_up(customer_in(bronze), None)
    high = follow_up(customer_in(gold), None)
    follow_up(customer_in(gold), SupportUserFactory())
    mine = client_manager.get("/my/")
    assert 'href="/my/?queue=unassigned"' in mine.content.decode()
    response = client_manager.get("/my/?queue=unassigned")
    assert response.status_code == 200
    assert pks(response) == [high.pk, low.pk]  # bucket ROI order here too
    assert "no one assigned" in response.content.decode()


def test_unknown_queue_is_400_naming_the_parameter(client_manager):
    response = client_manager.get("/my/?queue=everyone")
    assert response.status_code == 400
    assert "queue: unknown value" in response.content.decode()


# --- ordering ----------------------------------------------------------------------------------


def test_order_is_bucket_roi_then_decile_then_influence_then_age(
    client_support, support_user, buckets
):
    gold, bronze = buckets
    bronze_top = follow_up(customer_in(bronze, decile=1, influence=10), support_user, days_old=9)
    unsegmented = follow_up(customer_in(None, decile=5), support_user)
    gold_d3 = follow_up(customer_in(gold, decile=3, influence=9), support_user, days_old=9)
    gold_d1_low = follow_up(customer_in(gold, decile=1, influence=2), support_user, days_old=9)
    gold_d1_high_new = follow_up(customer_in(gold, decile=1, influence=7), support_user)
    gold_d1_high_old = follow_up(customer_in(gold, decile=1, influence=7), support_user, days_old=3)
    gold_no_decile = follow_up(customer_in(gold, influence=10), support_user, days_old=30)
    not_evaluated = follow_up(CustomerFactory(), support_user, days_old=60)  # no membership

    response = client_support.get("/my/")

    assert pks(response) == [
        gold_d1_high_old.pk,  # ROI 2.5, decile 1, influence 7, older
        gold_d1_high_new.pk,
        gold_d1_low.pk,  # influence 2
        gold_d3.pk,  # decile 3
        gold_no_decile.pk,  # no decile: after the ranked ones
        unsegmented.pk,  # Unsegmented ROI 1.1
        not_evaluated.pk,  # no membership row counts as Unsegmented
        bronze_top.pk,  # ROI 0.4, however valuable the customer
    ]


def test_without_any_snapshot_decile_and_influence_decide(client_support, support_user):
    low = follow_up(customer_in(None, decile=8), support_user, days_old=5)
    high = follow_up(customer_in(None, decile=2), support_user)
    assert pks(client_support.get("/my/")) == [high.pk, low.pk]


def test_each_row_says_why_and_the_order_is_explained(client_support, support_user, buckets):
    gold, _bronze = buckets
    customer = customer_in(gold, decile=2, influence=6, name="Yuna")
    follow_up(customer, support_user, reason="Unhappy NPS answer")
    body = client_support.get("/my/").content.decode()
    assert "Bucket Gold (ROI 2.50), value decile 2, influence 6" in body
    assert "background:#d4a017" in body
    assert "Unhappy NPS answer" in body and "Yuna Test" in body
    assert 'id="queue-order"' in body
    assert "the ROI of the customer&#x27;s bucket" in body


def test_done_and_closed_follow_ups_leave_the_queue(client_support, support_user):
    open_one = follow_up(CustomerFactory(), support_user)
    follow_up(
        CustomerFactory(), support_user, status=FollowUpStatus.DONE, completed_at=timezone.now()
    )
    assert pks(client_support.get("/my/")) == [open_one.pk]


def test_done_from_the_unassigned_queue_goes_back_to_it(client_manager, manager):
    item = follow_up(CustomerFactory(), None)
    response = client_manager.post(
        f"/my/follow-ups/{item.pk}/done/", {"outcome": "Called back", "queue": "unassigned"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/my/?queue=unassigned"
    item.refresh_from_db()
    assert item.status == FollowUpStatus.DONE and item.completed_by == manager


def test_done_with_errors_rerenders_the_same_queue(client_manager):
    item = follow_up(CustomerFactory(), None)
    response = client_manager.post(
        f"/my/follow-ups/{item.pk}/done/", {"outcome": "", "queue": "unassigned"}
    )
    assert response.status_code == 400
    assert response.context["queue"] == "unassigned"
    assert FollowUp.objects.get(pk=item.pk).status == FollowUpStatus.OPEN


# --- queries -----------------------------------------------------------------------------------


def test_query_count_is_constant(client_manager, manager, buckets, django_assert_max_num_queries):
    gold, bronze = buckets

    def count(url):
        with CaptureQueriesContext(connection) as ctx:
            assert client_manager.get(url).status_code == 200
        return len(ctx.captured_queries)

    follow_up(customer_in(gold, decile=1), manager)
    follow_up(customer_in(bronze, decile=1), None)
    one = (count("/my/"), count("/my/?queue=unassigned"))
    for n in range(50):
        bucket = (gold, bronze, None)[n % 3]
        follow_up(customer_in(bucket, decile=n % 10 + 1), manager)
        follow_up(customer_in(bucket, decile=n % 10 + 1, influence=n % 11), None)
    many = (count("/my/"), count("/my/?queue=unassigned"))
    assert one == many
    with django_assert_max_num_queries(9):
        client_manager.get("/my/?queue=unassigned")
