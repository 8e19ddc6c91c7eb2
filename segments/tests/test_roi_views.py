"""ROI screens: permission matrix, content, query counts; the selectors behind them."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from crm.metrics import metrics_refresh
from crm.models import FollowUp
from crm.tests.factories import (
    CustomerFactory,
    FollowUpFactory,
    InteractionFactory,
    OrderFactory,
)
from segments import selectors
from segments.jobs import roi_recalculate
from segments.models import Bucket, RoiSnapshot

pytestmark = pytest.mark.django_db

URLS = ["/segments/roi/", "/segments/negative/", "/segments/cohorts/"]
AS_OF = dt.date(2026, 6, 30)


def at(day: str) -> dt.datetime:
    return dt.datetime.combine(
        dt.date.fromisoformat(day), dt.time(12), tzinfo=timezone.get_default_timezone()
    )


@pytest.fixture
def data():
    """Two buckets; a profitable big spender, a costly small one, an unsegmented one."""
    big = Bucket.objects.create(
        name="Whales",
        priority=1,
        colour="#112233",
        rules={"op": "and", "conditions": [{"field": "order_count", "operator": ">=", "value": 2}]},
    )
    needy = Bucket.objects.create(
        name="Needy",
        priority=2,
        rules={
            "op": "and",
            "conditions": [{"field": "minutes_window", "operator": ">", "value": 100}],
        },
    )
    whale = CustomerFactory(last_name="Whale")
    for day in ("2026-05-01", "2026-06-01"):
        OrderFactory(customer=whale, placed_at=at(day), revenue=Decimal("1000"))
    InteractionFactory(customer=whale, minutes=30, occurred_at=at("2026-06-02"))
    costly = CustomerFactory(last_name="Costly", first_name="=cmd")
    OrderFactory(customer=costly, placed_at=at("2026-06-01"), revenue=Decimal("100"))
    InteractionFactory(customer=costly, minutes=300, occurred_at=at("2026-06-02"))
    quiet = CustomerFactory(last_name="Quiet", acquisition_date=dt.date(2026, 1, 15))
    OrderFactory(
        customer=quiet,
        placed_at=at("2026-02-01"),
        revenue=Decimal("10"),
        cost_of_goods=Decimal("7"),
    )
    roi_recalculate(as_of=AS_OF)
    return {"big": big, "needy": needy, "whale": whale, "costly": costly, "quiet": quiet}


@pytest.mark.parametrize("url", URLS)
def test_anonymous_goes_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302 and response.url.startswith("/login/")


@pytest.mark.parametrize("url", URLS)
def test_support_staff_may_not_see_roi(client_support, url):
    assert client_support.get(url).status_code == 403


@pytest.mark.parametrize("url", URLS)
def test_managers_see_roi_screens(client_manager, url):
    assert client_manager.get(url).status_code == 200


def test_recalculate_anonymous_goes_to_login(client):
    response = client.post("/segments/roi/recalculate/")
    assert response.status_code == 302 and response.url.startswith("/login/")


def test_recalculate_support_is_forbidden(client_support):
    assert client_support.post("/segments/roi/recalculate/").status_code == 403


def test_manager_queues_a_recalculation(client_manager, monkeypatch):
    queued = []
    monkeypatch.setattr("segments.tasks.roi_recalculate_task.delay", lambda **kw: queued.append(kw))
    response = client_manager.post("/segments/roi/recalculate/", {"full": "1"})
    assert response.status_code == 302 and response.url == "/segments/roi/"
    assert queued == [{"full": True}]
    assert client_manager.get("/segments/roi/recalculate/").status_code == 405


def test_recalculate_with_the_broker_down_says_so(client_manager, monkeypatch):
    from kombu.exceptions import OperationalError

    def down(**kw):
        raise OperationalError("connection refused")

    monkeypatch.setattr("segments.tasks.roi_recalculate_task.delay", down)
    response = client_manager.post("/segments/roi/recalculate/", follow=True)
    assert response.status_code == 200
    assert "cannot be reached" in response.content.decode()


def test_recalculate_is_refused_while_a_run_is_in_progress(client_manager):
    from segments.models import JobRun

    JobRun.objects.create(as_of=AS_OF, mode="full", status="running")
    response = client_manager.post("/segments/roi/recalculate/", follow=True)
    assert "already in progress" in response.content.decode()


def test_dashboard_shows_the_latest_snapshot(client_manager, data, django_assert_max_num_queries):
    with django_assert_max_num_queries(12):
        response = client_manager.get("/segments/roi/")
    html = response.content.decode()
    assert "Whales" in html and "Needy" in html and "Unsegmented" in html
    assert 'id="roi-trend-data"' in html and 'id="roi-whale-data"' in html
    assert "chart-4.6.1.umd.min.js" in html
    assert "Recalculate now" in html
    rows = response.context["table"].data.data
    assert [r.bucket_name for r in rows] == ["Whales", "Needy", ""]


def test_dashboard_without_snapshot(client_manager):
    response = client_manager.get("/segments/roi/")
    assert response.status_code == 200
    assert "No snapshot yet" in response.content.decode()


def test_negative_lists_customers_costing_more_than_they_bring(client_manager, data):
    response = client_manager.get("/segments/negative/")
    html = response.content.decode()
    assert "Costly" in html and "Whale" not in html and "Quiet" not in html
    csv_response = client_manager.get("/segments/negative/?export=csv")
    body = b"".join(csv_response.streaming_content).decode()
    lines = body.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Customer id")
    assert "'=cmd" in lines[1]  # formula neutralised
    assert "-170.00" in lines[1]  # margin 30 - 300 min x 40/60 = 200


def test_negative_is_constant_in_queries(client_manager, data, django_assert_max_num_queries):
    for _ in range(20):
        c = CustomerFactory()
        InteractionFactory(customer=c, minutes=60, occurred_at=at("2026-06-02"))
    roi_recalculate(as_of=AS_OF)
    with django_assert_max_num_queries(8):
        assert client_manager.get("/segments/negative/").status_code == 200


def test_cohort_triangle(data):
    triangle = selectors.cohort_triangle(months=12, today=dt.date(2026, 6, 30))
    row = next(r for r in triangle["rows"] if r["cohort"] == "2026-01")
    assert row["customers"] == 1 and row["cac"] == "50.00"
    # quiet: margin 3 in month 1 (February), nothing else: never recovers CAC 50.
    assert row["cells"][:2] == ["0.00", "3.00"]
    assert row["cells"][5] == "3.00" and row["cells"][6] is None  # July is in the future
    assert row["recovered"] is None


def test_cohort_recovery_month():
    cust = CustomerFactory(acquisition_date=dt.date(2026, 1, 10), acquisition_cost=Decimal("40"))
    OrderFactory(customer=cust, placed_at=at("2026-03-05"), revenue=Decimal("50"), cost_of_goods=0)
    metrics_refresh(as_of=dt.date(2026, 6, 30))  # the triangle reads the tables it maintains
    triangle = selectors.cohort_triangle(months=12, today=dt.date(2026, 6, 30))
    (row,) = triangle["rows"]
    assert row["cells"][:3] == ["0.00", "0.00", "50.00"] and row["recovered"] == 2


def test_cohorts_page(client_manager, data, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):
        response = client_manager.get("/segments/cohorts/")
    html = response.content.decode()
    assert 'id="cohort-triangle"' in html and "2026-01" in html


def test_whale_curve_is_sampled_and_ends_at_the_total(data):
    curve = selectors.whale_curve(points=2)
    total = sum(
        float(m)
        for m in RoiSnapshot.objects.filter(date=AS_OF).values_list("contribution", flat=True)
    )
    assert curve[0] == {"share": 0.0, "cumulative": 0.0}
    assert curve[-1]["share"] == 100.0
    assert curve[-1]["cumulative"] == pytest.approx(total)
    assert curve[1]["cumulative"] >= curve[-1]["cumulative"]  # the whale comes first


def test_roi_history_partial(data, client_manager):
    from django.template.loader import render_to_string

    rows = selectors.roi_history(data["big"])
    assert [r.date for r in rows] == [AS_OF]
    html = render_to_string("segments/_roi_history.html", {"bucket": data["big"]})
    assert "roi-history-data" in html and "3" in html


def test_follow_up_queue_orders_by_bucket_roi_then_decile_then_influence_then_age(
    data, support_user
):
    whale, costly, quiet = data["whale"], data["costly"], data["quiet"]
    rois = dict(RoiSnapshot.objects.filter(date=AS_OF).values_list("bucket_id", "roi"))
    assert rois[data["big"].pk] > 0 > rois[data["needy"].pk]
    old = FollowUpFactory(customer=costly, assigned_to=support_user)
    FollowUp.objects.filter(pk=old.pk).update(created_at=at("2026-01-01"))
    first = FollowUpFactory(customer=whale, assigned_to=support_user)
    unseg = FollowUpFactory(customer=quiet, assigned_to=support_user)
    FollowUpFactory(customer=whale)  # unassigned: not in the user's queue
    queue = list(selectors.follow_up_queue(support_user))
    # Whales ROI > Unsegmented (no cost: empty ROI, last) ... Needy ROI negative.
    assert [f.pk for f in queue] == [first.pk, old.pk, unseg.pk]
    assert "Whales" in selectors.follow_up_reason(queue[0])
    assert len(list(selectors.follow_up_queue(support_user, include_unassigned=True))) == 4


@pytest.mark.parametrize("model", ["jobrun", "roisnapshot"])
def test_admin_lists_runs_and_snapshots_read_only(client_admin, data, model):
    response = client_admin.get(f"/admin/segments/{model}/")
    assert response.status_code == 200
    assert client_admin.get(f"/admin/segments/{model}/add/").status_code == 403


def test_bucket_page_shows_its_roi_history(client_manager, data):
    response = client_manager.get(f"/segments/{data['big'].pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="roi-history"' in html and "roi-history-data" in html
