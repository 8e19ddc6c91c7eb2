from decimal import Decimal

import pytest

from crm import selectors, services
from crm.models import Customer, OwnerChange
from crm.tests.factories import (
    CustomerFactory,
    InteractionFactory,
    OrderFactory,
    SupportUserFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def _customer_with(margin: str, minutes: int = 0, staff=None, **kw):
    customer = CustomerFactory(**kw)
    if margin != "0":
        OrderFactory(customer=customer, revenue=Decimal(margin), cost_of_goods=Decimal("0"))
    if minutes:
        InteractionFactory(
            customer=customer, minutes=minutes, **({"staff": staff} if staff else {})
        )
    return customer


def test_top_decile_by_lifetime_contribution_hand_built(settings):
    settings.CRM_STAFF_COST_PER_HOUR = Decimal("60.00")  # 1 per minute
    pricey = UserFactory(hourly_cost=Decimal("600.00"))  # 10 per minute
    # 20 customers: NTILE(10) puts exactly 2 in decile 1.
    best = _customer_with("1000", minutes=10)  # 1000 - 10 = 990
    # Higher margin but served by a pricey staff member: 1500 - 60 * 10 = 900
    second = _customer_with("1500", minutes=60, staff=pricey)
    third = _customer_with("950")  # 950 beats the bigger but costlier `second`
    for i in range(17):
        _customer_with(str(10 + i), minutes=5)
    top = list(selectors.high_value_accounts())
    assert [c.pk for c in top] == [best.pk, third.pk]
    assert top[0].contribution_total == Decimal("990")
    assert top[0].cost_to_serve_total == Decimal("10")
    assert second.pk not in {c.pk for c in top}
    second_row = selectors.customers_with_contribution().get(pk=second.pk)
    assert second_row.cost_to_serve_total == Decimal("600")
    assert second_row.contribution_total == Decimal("900")


def test_customers_without_orders_or_interactions_count_as_zero():
    a = CustomerFactory()
    annotated = selectors.customers_with_contribution().get(pk=a.pk)
    assert annotated.contribution_total == 0


def test_unassigned_filter_narrows_the_top_decile(client_manager):
    owner = SupportUserFactory()
    owned = _customer_with("1000", owner=owner)
    free = _customer_with("900")
    for i in range(18):
        _customer_with(str(i + 1))
    all_ids = [c.pk for c in selectors.high_value_accounts()]
    assert all_ids == [owned.pk, free.pk]
    response = client_manager.get("/accounts/high-value/", {"unassigned": "1"})
    assert response.status_code == 200
    assert [r.record.pk for r in response.context["table"].paginated_rows] == [free.pk]


def test_high_value_page_constant_queries(client_manager, django_assert_max_num_queries):
    for i in range(60):
        _customer_with(str(i + 1), minutes=3)
    with django_assert_max_num_queries(10):
        assert client_manager.get("/accounts/high-value/").status_code == 200


def test_bulk_assign_writes_one_owner_change_per_customer(client_manager, manager):
    staff = SupportUserFactory()
    previous = SupportUserFactory()
    customers = [CustomerFactory(), CustomerFactory(owner=previous), CustomerFactory(owner=staff)]
    response = client_manager.post(
        "/accounts/high-value/assign/",
        {"customers": [c.pk for c in customers], "owner": staff.pk, "reason": "key accounts"},
    )
    assert response.status_code == 302
    assert Customer.objects.filter(owner=staff).count() == 3
    changes = OwnerChange.objects.order_by("customer_id")
    assert [(c.customer_id, c.from_owner_id) for c in changes] == [
        (customers[0].pk, None),
        (customers[1].pk, previous.pk),
    ]  # the one already owned by staff is left alone
    assert {c.changed_by_id for c in changes} == {manager.pk}
    assert {c.reason for c in changes} == {"key accounts"}


@pytest.mark.parametrize(
    "data",
    [
        {"customers": ["abc"], "owner": "1"},
        {"customers": [], "owner": "1"},
        {"customers": ["1"], "owner": "abc"},
        {"customers": ["1"], "owner": "999999"},
        {"customers": ["999999"], "owner": "STAFF"},
    ],
)
def test_bulk_assign_bad_input_changes_nothing(client_manager, data):
    staff = SupportUserFactory()
    customer = CustomerFactory()
    data = {
        k: ([str(customer.pk) if v == "1" else v for v in val] if isinstance(val, list) else val)
        for k, val in data.items()
    }
    if data.get("owner") == "STAFF":
        data["owner"] = staff.pk
    response = client_manager.post("/accounts/high-value/assign/", data)
    assert response.status_code == 400
    assert not OwnerChange.objects.exists()
    assert Customer.objects.get(pk=customer.pk).owner is None


def test_bulk_assign_is_atomic_when_one_id_is_unknown(manager):
    staff = SupportUserFactory()
    customer = CustomerFactory()
    with pytest.raises(services.ValidationError):
        services.accounts_assign(
            customer_ids=[customer.pk, 999999], owner=staff, by=manager, reason=""
        )
    assert Customer.objects.get(pk=customer.pk).owner is None
    assert not OwnerChange.objects.exists()


def test_even_out_preview_changes_nothing_then_apply(client_manager):
    ann, bob = SupportUserFactory(first_name="Ann"), SupportUserFactory(first_name="Bob")
    heavy = _customer_with("5000", service_effort=10)
    light = [_customer_with("4000", service_effort=2) for _ in range(5)]
    for i in range(54):
        _customer_with(str(i + 1))
    # 60 customers: 6 in the top decile (heavy + 5 light).
    response = client_manager.get("/accounts/high-value/even-out/", {"staff": [ann.pk, bob.pk]})
    assert response.status_code == 200
    proposal = response.context["proposal"]
    assert proposal.totals == {ann.pk: 10, bob.pk: 10}
    assert proposal.counts == {ann.pk: 1, bob.pk: 5}
    assert not OwnerChange.objects.exists()
    assert b"count as 5" in response.content
    payload = response.context["apply_form"].initial["assignments"]
    applied = client_manager.post(
        "/accounts/high-value/even-out/", {"assignments": payload, "reason": "balance"}
    )
    assert applied.status_code == 302
    assert Customer.objects.get(pk=heavy.pk).owner == ann
    assert set(Customer.objects.filter(owner=bob).values_list("pk", flat=True)) == {
        c.pk for c in light
    }
    assert OwnerChange.objects.count() == 6


@pytest.mark.parametrize("payload", ["", "garbage", "1:2:3", "abc:1", "999999:999999"])
def test_even_out_apply_bad_payload(client_manager, payload):
    CustomerFactory()
    response = client_manager.post("/accounts/high-value/even-out/", {"assignments": payload})
    assert response.status_code == 400
    assert not OwnerChange.objects.exists()


@pytest.mark.parametrize("params", [{"staff": "abc"}, {"staff": "999999"}, {"staff": ""}])
def test_even_out_preview_bad_staff(client_manager, params):
    response = client_manager.get("/accounts/high-value/even-out/", params)
    assert response.status_code == 400
    assert "proposal" not in response.context


def test_even_out_apply_with_non_staff_target_is_refused(client_manager):
    outsider = UserFactory()
    customer = CustomerFactory()
    response = client_manager.post(
        "/accounts/high-value/even-out/", {"assignments": f"{customer.pk}:{outsider.pk}"}
    )
    assert response.status_code == 400
    assert Customer.objects.get(pk=customer.pk).owner is None


@pytest.mark.parametrize(
    "params",
    [
        {"page": "abc"},
        {"page": "0"},
        {"page": "9999"},
        {"sort": "bogus"},
        {"per_page": "x"},
        {"sort": "owner"},
        {"unassigned": "maybe"},
    ],
)
def test_high_value_garbage_params(client_manager, params):
    _customer_with("10")
    assert client_manager.get("/accounts/high-value/", params).status_code == 200


def test_high_value_table_shows_exactly_its_columns():
    from crm.tables import HighValueTable

    table = HighValueTable([], order_by=())
    assert [c.name for c in table.columns] == [
        "customers",
        "name",
        "owner",
        "service_effort",
        "status",
        "contribution_total",
        "margin_total",
        "cost_to_serve_total",
    ]
