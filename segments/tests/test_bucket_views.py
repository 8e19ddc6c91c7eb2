"""Bucket screens: permission matrix, editor (htmx and plain POST), preview, detail, CSV."""

import datetime as dt
from decimal import Decimal

import pytest

from crm.models import CustomerMetrics
from crm.tests.factories import CustomerFactory
from segments.models import Bucket, BucketVersion
from segments.services import bucket_update, memberships_refresh
from segments.tests.factories import BucketFactory

pytestmark = pytest.mark.django_db

RULES = {"op": "and", "conditions": [{"field": "effort", "operator": ">=", "value": 7}]}


@pytest.fixture
def bucket():
    return BucketFactory(name="High effort", priority=1, rules=RULES)


def urls(bucket):
    return {
        "list": ("get", "/segments/"),
        "detail": ("get", f"/segments/{bucket.pk}/"),
        "new": ("get", "/segments/new/"),
        "edit": ("get", f"/segments/{bucket.pk}/edit/"),
        "preview": ("post", "/segments/preview/"),
    }


@pytest.mark.parametrize("name", ["list", "detail", "new", "edit", "preview"])
def test_anonymous_goes_to_login(client, bucket, name):
    method, url = urls(bucket)[name]
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response.url.startswith("/login/")


@pytest.mark.parametrize(
    ("name", "status"),
    [("list", 200), ("detail", 200), ("new", 403), ("edit", 403), ("preview", 403)],
)
def test_support_staff_may_only_view(client_support, bucket, name, status):
    method, url = urls(bucket)[name]
    assert getattr(client_support, method)(url).status_code == status


@pytest.mark.parametrize("name", ["list", "detail", "new", "edit", "preview"])
def test_managers_may_do_everything(client_manager, bucket, name):
    method, url = urls(bucket)[name]
    assert getattr(client_manager, method)(url).status_code == 200


def test_support_cannot_post_to_the_editor(client_support, bucket):
    response = client_support.post(f"/segments/{bucket.pk}/edit/", {"name": "x"})
    assert response.status_code == 403


def test_managers_hold_view_roi(manager, support_user):
    assert manager.has_perm("segments.view_roi")
    assert not support_user.has_perm("segments.view_roi")


def test_unknown_bucket_is_404(client_manager):
    assert client_manager.get("/segments/999999/").status_code == 404
    assert client_manager.get("/segments/999999/edit/").status_code == 404


def form_data(**extra):
    data = {
        "name": "Sarah the influencer",
        "persona": "19, buys online monthly, 3,000 followers.",
        "colour": "#ff7f0e",
        "priority": "5",
        "active": "on",
        "rules-op": "and",
        "rules-groups": "1",
        "rules-gop-1": "or",
        "rules-rows": "3",
        "row-0-group": "0",
        "row-0-field": "followers",
        "row-0-operator": ">=",
        "row-0-value": "3000",
        "row-1-group": "1",
        "row-1-field": "city",
        "row-1-operator": "in",
        "row-1-value": "Seoul, Busan",
        "row-2-group": "1",
        "row-2-field": "age",
        "row-2-operator": "between",
        "row-2-value": "18, 25",
        "action": "save",
    }
    data.update(extra)
    return data


def test_create_from_rows_with_a_nested_group(client_manager, manager):
    response = client_manager.post("/segments/new/", form_data())
    assert response.status_code == 302
    bucket = Bucket.objects.get(name="Sarah the influencer")
    assert bucket.rules == {
        "op": "and",
        "conditions": [
            {"field": "followers", "operator": ">=", "value": 3000},
            {
                "op": "or",
                "conditions": [
                    {"field": "city", "operator": "in", "value": ["Seoul", "Busan"]},
                    {"field": "age", "operator": "between", "value": [18, 25]},
                ],
            },
        ],
    }
    assert BucketVersion.objects.get(bucket=bucket).saved_by == manager


def test_bad_rule_is_refused_with_a_message_naming_the_condition(client_manager):
    response = client_manager.post("/segments/new/", form_data(**{"row-2-value": "old"}))
    assert response.status_code == 400
    assert "Condition 2.2: age:" in response.content.decode()
    assert not Bucket.objects.exists()


def test_priority_collision_is_refused_with_a_message(client_manager, bucket):
    response = client_manager.post("/segments/new/", form_data(priority="1"))
    assert response.status_code == 400
    assert "already used by bucket" in response.content.decode()
    assert Bucket.objects.count() == 1


def test_invalid_json_mode_is_a_400(client_manager):
    data = form_data(**{"rules-mode": "json", "rules-json": "{not json"})
    response = client_manager.post("/segments/new/", data)
    assert response.status_code == 400
    assert "Rules JSON does not parse" in response.content.decode()


def test_json_mode_saves_deeper_trees(client_manager):
    deep = (
        '{"op": "or", "conditions": [{"op": "and", "conditions": [{"op": "or", "conditions": '
        '[{"field": "effort", "operator": "=", "value": 3}]}]}]}'
    )
    response = client_manager.post(
        "/segments/new/", form_data(**{"rules-mode": "json", "rules-json": deep})
    )
    assert response.status_code == 302
    bucket = Bucket.objects.get()
    assert bucket.rules["conditions"][0]["conditions"][0]["op"] == "or"
    # Its editor falls back to JSON mode.
    page = client_manager.get(f"/segments/{bucket.pk}/edit/").content.decode()
    assert 'name="rules-mode" value="json" checked' in page


def test_edit_bumps_version(client_manager, bucket):
    data = form_data(name="High effort", priority="1")
    response = client_manager.post(f"/segments/{bucket.pk}/edit/", data)
    assert response.status_code == 302
    bucket.refresh_from_db()
    assert bucket.version == 2 and bucket.colour == "#ff7f0e"


def test_add_row_with_htmx_returns_the_editor_only(client_manager):
    data = form_data(action="add_row_to-1")
    response = client_manager.post("/segments/new/", data, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert body.startswith('<div id="rules-editor">')
    assert 'name="rules-rows" value="4"' in body
    assert not Bucket.objects.exists()


def test_remove_row_without_javascript_renders_the_page(client_manager):
    response = client_manager.post("/segments/new/", form_data(action="remove_row-0"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" in body
    assert 'name="rules-rows" value="2"' in body
    assert 'value="followers" selected' not in body


def test_add_group_without_javascript(client_manager):
    data = form_data(action="add_group")
    del data["active"]
    body = client_manager.post("/segments/new/", data).content.decode()
    assert 'name="rules-groups" value="2"' in body
    assert 'name="active" id="id_active" checked' not in body  # what was posted is kept
    assert 'value="Sarah the influencer"' in body


def test_preview_counts_alone_and_after_exclusivity(client_manager, bucket):
    a = CustomerFactory(service_effort=9, city="Seoul", first_name="Ann")
    CustomerFactory(service_effort=2, city="Seoul", first_name="Bob")
    CustomerMetrics.objects.create(
        customer=a,
        margin_window=Decimal("300"),
        cost_to_serve_window=Decimal("100"),
        contribution_window=Decimal("200"),
    )
    data = {
        "priority": "5",
        "rules-op": "and",
        "rules-rows": "1",
        "row-0-group": "0",
        "row-0-field": "city",
        "row-0-operator": "=",
        "row-0-value": "Seoul",
    }
    response = client_manager.post("/segments/preview/", data)
    ctx = response.context["preview"]
    assert (ctx.matched, ctx.exclusive) == (2, 1)  # Ann is taken by priority 1
    # Higher priority than the existing bucket: both stay, and Ann's money counts.
    ctx = client_manager.post("/segments/preview/", {**data, "priority": "1"}).context
    assert ctx["preview"].exclusive == 2
    # The edited bucket itself never competes with its own preview.
    ctx = client_manager.post(
        "/segments/preview/", {**data, "bucket_id": str(bucket.pk), "priority": "9"}
    ).context
    assert ctx["preview"].exclusive == 2
    assert ctx["preview"].contribution == Decimal("200")
    assert ctx["preview"].roi == Decimal("2.00")
    assert "Ann" in ctx["preview"].sample[0].first_name or "Ann" in str(ctx["preview"].sample)


def test_preview_roi_is_empty_without_cost(client_manager):
    CustomerFactory(city="Seoul")
    data = {
        "rules-op": "and",
        "rules-rows": "1",
        "row-0-field": "city",
        "row-0-operator": "=",
        "row-0-value": "Seoul",
    }
    response = client_manager.post("/segments/preview/", data)
    assert response.context["preview"].roi is None
    assert "—" in response.content.decode()


def test_preview_shows_errors_not_500(client_manager):
    data = {"rules-op": "and", "rules-rows": "1", "row-0-field": "efort", "row-0-operator": "="}
    response = client_manager.post("/segments/preview/", data)
    assert response.status_code == 200
    assert "Condition 1: unknown field" in response.content.decode()


def test_list_shows_counts_and_warns_over_twenty(client_manager, django_assert_max_num_queries):
    BucketFactory.create_batch(21)
    CustomerFactory.create_batch(3, service_effort=9)
    memberships_refresh(as_of=dt.date(2026, 1, 1))
    with django_assert_max_num_queries(10):
        response = client_manager.get("/segments/")
    body = response.content.decode()
    assert "More than 20 buckets are active" in body
    assert "swatch" in body
    assert "Service effort ≥ 7" in body


def test_detail_shows_members_history_and_is_constant_in_queries(
    client_manager, bucket, manager, django_assert_max_num_queries
):
    customers = CustomerFactory.create_batch(30, service_effort=9)
    for c in customers:
        CustomerMetrics.objects.create(customer=c, value_decile=2)
    memberships_refresh(as_of=dt.date(2026, 1, 1))
    bucket_update(bucket=bucket, user=manager, rules={**RULES, "op": "or"})
    with django_assert_max_num_queries(14):
        response = client_manager.get(f"/segments/{bucket.pk}/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "Service effort ≥ 7" in body
    assert "Version 2" in body and "+ any of:" in body
    assert customers[0].email in body


def test_detail_filters_members(client_manager, bucket):
    CustomerFactory(service_effort=9, city="Seoul", email="in-seoul@example.com")
    CustomerFactory(service_effort=9, city="Busan", email="in-busan@example.com")
    memberships_refresh(as_of=dt.date(2026, 1, 1))
    body = client_manager.get(f"/segments/{bucket.pk}/?city=busan").content.decode()
    assert "in-busan@example.com" in body and "in-seoul@example.com" not in body


def test_members_csv_export_streams_and_neutralises_formulas(client_manager, bucket):
    CustomerFactory(service_effort=9, first_name="=HYPERLINK(1)")
    memberships_refresh(as_of=dt.date(2026, 1, 1))
    response = client_manager.get(f"/segments/{bucket.pk}/?export=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    content = b"".join(response.streaming_content).decode()
    lines = content.strip().splitlines()
    assert lines[0].startswith("id,first_name")
    assert len(lines) == 2
    assert "'=HYPERLINK(1)" in content


def test_invalid_member_filter_is_not_a_500(client_manager, bucket):
    response = client_manager.get(f"/segments/{bucket.pk}/?decile=abc")
    assert response.status_code == 200


def test_admin_lists_buckets_read_only(client_admin, bucket):
    response = client_admin.get("/admin/segments/bucket/")
    assert response.status_code == 200
    assert "High effort" in response.content.decode()
    assert client_admin.get("/admin/segments/bucket/add/").status_code == 403


def test_customer_page_shows_bucket_and_history(client_support, bucket):
    customer = CustomerFactory(service_effort=9)
    memberships_refresh(as_of=dt.date(2026, 1, 1))
    customer.service_effort = 1
    customer.save(update_fields=["service_effort"])
    memberships_refresh(as_of=dt.date(2026, 1, 2))
    body = client_support.get(f"/customers/{customer.pk}/").content.decode()
    assert 'id="customer-bucket"' in body
    assert "No active bucket matched" in body
    assert "2026-01-01 – 2026-01-02 · High effort" in body


def test_customer_page_before_any_refresh(client_support):
    customer = CustomerFactory()
    body = client_support.get(f"/customers/{customer.pk}/").content.decode()
    assert "Not evaluated yet" in body


def test_absurdly_nested_json_is_a_400_not_a_500(client_manager):
    data = form_data(**{"rules-mode": "json", "rules-json": "[" * 50_000 + "]" * 50_000})
    response = client_manager.post("/segments/new/", data)
    assert response.status_code == 400
    preview = client_manager.post("/segments/preview/", data)
    assert preview.status_code == 200 and "nested too deeply" in preview.content.decode()
