import datetime as dt

import pytest
from django.utils import timezone

from crm import services
from crm.models import (
    Customer,
    CustomerStatus,
    FollowUp,
    Interaction,
    OwnerChange,
    RatingChange,
    RatingKind,
    SocialProfile,
)
from crm.scores import influence_score
from crm.tests.factories import (
    CustomerFactory,
    FollowUpFactory,
    InteractionFactory,
    OrderFactory,
    SocialProfileFactory,
    SupportUserFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def url(customer, action=""):
    return f"/customers/{customer.pk}/{action}"


def test_detail_shows_every_section(client_support):
    customer = CustomerFactory(first_name="Dana")
    OrderFactory(customer=customer, category="Shoes")
    InteractionFactory(customer=customer, summary="Asked about sizes")
    SocialProfileFactory(customer=customer, handle="dana_insta")
    FollowUpFactory(customer=customer, reason="Call back about sizes")
    response = client_support.get(url(customer))
    assert response.status_code == 200
    for text in [b"Dana", b"Shoes", b"Asked about sizes", b"dana_insta", b"Call back about sizes"]:
        assert text in response.content


def test_detail_unknown_customer_is_404(client_support):
    assert client_support.get("/customers/999999/").status_code == 404


def test_detail_query_count_does_not_grow(client_support, django_assert_max_num_queries):
    customer = CustomerFactory()
    for _ in range(15):
        OrderFactory(customer=customer)
        InteractionFactory(customer=customer)
        SocialProfileFactory(customer=customer)
        FollowUpFactory(customer=customer)
    with django_assert_max_num_queries(16):
        assert client_support.get(url(customer)).status_code == 200


def test_effort_rating_keeps_history(client_support, support_user):
    customer = CustomerFactory(service_effort=3)
    response = client_support.post(url(customer, "effort/"), {"effort": 7, "reason": "slow"})
    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.service_effort == 7
    assert customer.effort_rated_by == support_user
    change = RatingChange.objects.get(customer=customer)
    assert (change.kind, change.old_value, change.new_value) == (RatingKind.EFFORT, 3, 7)


@pytest.mark.parametrize("effort", ["0", "11", "abc", ""])
def test_effort_bad_input(client_support, effort):
    customer = CustomerFactory(service_effort=4)
    response = client_support.post(url(customer, "effort/"), {"effort": effort})
    assert response.status_code == 400
    assert b"Service effort" in response.content
    customer.refresh_from_db()
    assert customer.service_effort == 4
    assert not RatingChange.objects.exists()


def test_influence_override_needs_reason_and_manager(client_manager):
    customer = CustomerFactory()
    SocialProfileFactory(customer=customer, followers=1000)
    services.influence_recompute(customer_ids=[customer.pk])
    assert client_manager.post(url(customer, "influence/"), {"value": 9}).status_code == 400
    customer.refresh_from_db()
    assert customer.influence == 6
    response = client_manager.post(url(customer, "influence/"), {"value": 9, "reason": "TV"})
    assert response.status_code == 302
    customer.refresh_from_db()
    assert (customer.influence, customer.influence_computed, customer.influence_override) == (
        9,
        6,
        9,
    )
    # clearing returns to the computed score
    client_manager.post(url(customer, "influence/"), {"value": ""})
    customer.refresh_from_db()
    assert (customer.influence, customer.influence_override) == (6, None)
    assert RatingChange.objects.filter(kind=RatingKind.INFLUENCE).count() == 2


@pytest.mark.parametrize("value", ["-1", "11", "x"])
def test_influence_override_bad_values(client_manager, value):
    customer = CustomerFactory()
    response = client_manager.post(url(customer, "influence/"), {"value": value, "reason": "r"})
    assert response.status_code == 400
    customer.refresh_from_db()
    assert customer.influence_override is None


@pytest.mark.parametrize(
    "followers", [0, 1, 100, 1_000, 3_000, 9_999, 10_000, 31_622, 100_000, 2_000_000_000]
)
def test_influence_recompute_in_sql_matches_formula(followers):
    customer = CustomerFactory()
    SocialProfileFactory(customer=customer, followers=followers)
    services.influence_recompute(customer_ids=[customer.pk])
    customer.refresh_from_db()
    assert customer.influence_computed == influence_score(followers)
    assert customer.influence == influence_score(followers)


def test_social_profile_add_edit_remove_recomputes_influence(client_support):
    customer = CustomerFactory()
    response = client_support.post(
        url(customer, "social/"), {"network": "tiktok", "handle": "@sam", "followers": 100}
    )
    assert response.status_code == 302
    profile = SocialProfile.objects.get(customer=customer)
    assert profile.handle == "sam"
    customer.refresh_from_db()
    assert customer.influence == 4
    client_support.post(
        url(customer, f"social/{profile.pk}/"),
        {"network": "tiktok", "handle": "sam", "followers": 3000},
    )
    customer.refresh_from_db()
    assert customer.influence == 7
    client_support.post(url(customer, f"social/{profile.pk}/delete/"))
    customer.refresh_from_db()
    assert customer.influence == 0
    assert not SocialProfile.objects.exists()


@pytest.mark.parametrize(
    "data",
    [
        {"network": "myspace", "handle": "a", "followers": 1},
        {"network": "x", "handle": "", "followers": 1},
        {"network": "x", "handle": "a", "followers": -1},
        {"network": "x", "handle": "a", "followers": "many"},
    ],
)
def test_social_profile_bad_input(client_support, data):
    customer = CustomerFactory()
    assert client_support.post(url(customer, "social/"), data).status_code == 400
    assert not SocialProfile.objects.exists()


def test_social_profile_duplicate_is_refused(client_support):
    customer = CustomerFactory()
    SocialProfileFactory(customer=customer, network="x", handle="dup")
    response = client_support.post(
        url(customer, "social/"), {"network": "x", "handle": "dup", "followers": 5}
    )
    assert response.status_code == 400
    assert SocialProfile.objects.count() == 1


def test_edit_profile_of_other_customer_is_404(client_support):
    customer = CustomerFactory()
    other = SocialProfileFactory()
    response = client_support.post(
        url(customer, f"social/{other.pk}/"), {"network": "x", "handle": "h", "followers": 1}
    )
    assert response.status_code == 404


def _interaction_data(**kw):
    data = {
        "channel": "phone",
        "direction": "inbound",
        "minutes": 12,
        "summary": "Wants a refund",
        "outcome": "follow_up",
        "follow_up_on": "",
    }
    data.update(kw)
    return data


def test_log_interaction_without_js_redirects(client_support, support_user):
    customer = CustomerFactory()
    response = client_support.post(url(customer, "interactions/"), _interaction_data())
    assert response.status_code == 302
    interaction = Interaction.objects.get(customer=customer)
    assert (interaction.staff, interaction.minutes) == (support_user, 12)
    assert not FollowUp.objects.exists()


def test_log_interaction_with_htmx_swaps_the_panel(client_support):
    customer = CustomerFactory()
    response = client_support.post(
        url(customer, "interactions/"), _interaction_data(), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert b'id="interaction-panel"' in response.content
    assert b"Wants a refund" in response.content
    assert b"<html" not in response.content
    assert Interaction.objects.count() == 1


def test_htmx_errors_are_swapped_in_and_nothing_saved(client_support):
    customer = CustomerFactory()
    response = client_support.post(
        url(customer, "interactions/"),
        _interaction_data(minutes=0),
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert b"errors" in response.content
    assert not Interaction.objects.exists()


def test_follow_up_goes_to_owner_else_logging_user(client_support, support_user):
    owner = SupportUserFactory()
    owned = CustomerFactory(owner=owner)
    free = CustomerFactory()
    tomorrow = (timezone.localdate() + dt.timedelta(days=1)).isoformat()
    client_support.post(url(owned, "interactions/"), _interaction_data(follow_up_on=tomorrow))
    client_support.post(url(free, "interactions/"), _interaction_data(follow_up_on=tomorrow))
    assert FollowUp.objects.get(customer=owned).assigned_to == owner
    follow_up = FollowUp.objects.get(customer=free)
    assert follow_up.assigned_to == support_user
    assert follow_up.interaction.customer == free
    assert follow_up.due_on.isoformat() == tomorrow


@pytest.mark.parametrize(
    "bad",
    [
        {"minutes": 0},
        {"minutes": 1441},
        {"minutes": "ten"},
        {"channel": "pigeon"},
        {"outcome": "maybe"},
        {"follow_up_on": "2026-13-45"},
        {"follow_up_on": "yesterday"},
        {"follow_up_on": "2000-01-01"},
    ],
)
def test_log_interaction_bad_input_saves_nothing(client_support, bad):
    customer = CustomerFactory()
    response = client_support.post(url(customer, "interactions/"), _interaction_data(**bad))
    assert response.status_code == 400
    assert not Interaction.objects.exists()
    assert not FollowUp.objects.exists()


def test_cancel_customer(client_support):
    customer = CustomerFactory()
    assert client_support.post(url(customer, "cancel/"), {}).status_code == 400
    response = client_support.post(url(customer, "cancel/"), {"confirm": "on"})
    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.status == CustomerStatus.CHURNED
    assert customer.cancelled_at is not None
    again = client_support.post(url(customer, "cancel/"), {"confirm": "on"})
    assert again.status_code == 400


def test_owner_assign_single(client_manager, manager):
    staff = SupportUserFactory()
    customer = CustomerFactory()
    response = client_manager.post(url(customer, "owner/"), {"owner": staff.pk, "reason": "vip"})
    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.owner == staff
    change = OwnerChange.objects.get(customer=customer)
    assert (change.from_owner, change.to_owner, change.changed_by, change.reason) == (
        None,
        staff,
        manager,
        "vip",
    )


@pytest.mark.parametrize("owner", ["999999", "abc"])
def test_owner_assign_unknown_owner(client_manager, owner):
    customer = CustomerFactory()
    response = client_manager.post(url(customer, "owner/"), {"owner": owner})
    assert response.status_code == 400
    assert not OwnerChange.objects.exists()


def test_owner_assign_refuses_non_staff(client_manager):
    outsider = UserFactory()  # no role
    customer = CustomerFactory()
    response = client_manager.post(url(customer, "owner/"), {"owner": outsider.pk})
    assert response.status_code == 400
    assert Customer.objects.get(pk=customer.pk).owner is None


def test_influence_sql_matches_python_at_every_rounding_boundary():
    # 2 x log10(1 + n) crosses k + 0.5 between these follower counts.
    counts = []
    for k in range(10):
        edge = 10 ** ((k + 0.5) / 2) - 1
        counts += [max(int(edge), 0), int(edge) + 1]
    customers = [CustomerFactory() for _ in counts]
    for customer, followers in zip(customers, counts, strict=True):
        SocialProfileFactory(customer=customer, followers=followers)
    assert services.influence_recompute() == len(customers)
    got = dict(Customer.objects.values_list("pk", "influence_computed"))
    for customer, followers in zip(customers, counts, strict=True):
        assert got[customer.pk] == influence_score(followers), followers


def test_influence_recompute_keeps_override_as_effective():
    customer = CustomerFactory(influence_override=2)
    SocialProfileFactory(customer=customer, followers=100_000)
    services.influence_recompute(customer_ids=[customer.pk])
    customer.refresh_from_db()
    assert (customer.influence_computed, customer.influence) == (10, 2)
