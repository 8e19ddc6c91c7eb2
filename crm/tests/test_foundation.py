import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection

from crm import roles
from crm.tests.factories import CustomerFactory, InteractionFactory

pytestmark = pytest.mark.django_db


def test_tests_run_on_postgresql():
    assert connection.vendor == "postgresql"


def test_roles_exist_with_their_permissions():
    support = Group.objects.get(name=roles.SUPPORT)
    managers = Group.objects.get(name=roles.MANAGERS)
    crm_perms = {
        f"crm.{codename}"
        for codename in support.permissions.filter(content_type__app_label="crm").values_list(
            "codename", flat=True
        )
    }
    assert crm_perms == set(roles.SUPPORT_PERMISSIONS)
    assert managers.permissions.filter(codename="assign_owner").exists()
    assert not support.permissions.filter(codename="assign_owner").exists()


def test_anonymous_is_sent_to_login(client):
    response = client.get("/customers/")
    assert response.status_code == 302
    assert response.url.startswith("/login/")


def test_login_page_renders(client):
    assert client.get("/login/").status_code == 200


@pytest.mark.parametrize("minutes", [0, 1441])
def test_interaction_minutes_range_is_a_database_constraint(minutes):
    with pytest.raises(IntegrityError):
        InteractionFactory(minutes=minutes)


def test_effort_range_is_a_database_constraint():
    with pytest.raises(IntegrityError):
        CustomerFactory(service_effort=11)


def test_external_id_unique_only_when_present():
    CustomerFactory(external_id="")
    CustomerFactory(external_id="")
    CustomerFactory(external_id="A1")
    with pytest.raises(IntegrityError):
        CustomerFactory(external_id="A1")


def test_role_fixtures_hold_their_groups(support_user, manager):
    assert support_user.has_perm("crm.add_interaction")
    assert not support_user.has_perm("crm.assign_owner")
    assert manager.has_perm("crm.assign_owner")


@pytest.mark.django_db(transaction=True)
def test_roles_survive_a_flush_and_hold_every_apps_permissions():
    # Transactional tests flush the database; post_migrate's roles_sync brings the roles back.
    from django.apps import apps

    declared = roles.declared_role_permissions(apps.get_app_configs())
    managers = Group.objects.get(name=roles.MANAGERS)
    held = {
        f"{app}.{codename}"
        for app, codename in managers.permissions.values_list("content_type__app_label", "codename")
    }
    assert declared[roles.MANAGERS] <= held
    assert "segments.view_roi" in held


def test_order_margin_must_be_revenue_minus_cost():
    from decimal import Decimal

    from crm.tests.factories import OrderFactory

    OrderFactory(revenue=Decimal("40.93"), cost_of_goods=Decimal("28.65"))
    with pytest.raises(IntegrityError):
        OrderFactory(
            revenue=Decimal("40.93"), cost_of_goods=Decimal("28.65"), margin=Decimal("12.29")
        )
