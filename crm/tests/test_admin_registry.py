"""Every model of crm, segments and surveys is in the Django admin, and its pages open."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.db import transaction
from django.test import Client
from django.urls import reverse

from crm.tests.factories import UserFactory
from crm.tests.test_url_sweep import _build_world

pytestmark = pytest.mark.django_db

APPS = ("crm", "segments", "surveys")
MODELS = [model for label in APPS for model in apps.get_app_config(label).get_models()]


def _label(model) -> str:
    return model._meta.label


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """One data set for the module: a row in (nearly) every table, rolled back at the end."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            yield _build_world()
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture
def superuser_client(world):
    client = Client()
    client.force_login(UserFactory(username="sweep-admin", is_staff=True, is_superuser=True))
    return client


def test_every_model_is_registered():
    missing = [_label(m) for m in MODELS if m not in admin.site._registry]
    assert not missing, f"not in the admin: {missing}"
    assert len(MODELS) >= 20  # the walk found the apps' models


@pytest.mark.parametrize("model", MODELS, ids=_label)
def test_admin_pages_open(superuser_client, model):
    opts = model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    assert superuser_client.get(changelist).status_code == 200
    searched = superuser_client.get(changelist, {"q": "'; DROP", "o": "99", "p": "-1"})
    assert searched.status_code < 500

    obj = model._default_manager.order_by("pk").first()
    if obj is not None:
        change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        assert superuser_client.get(change).status_code == 200, change
    model_admin = admin.site._registry[model]
    request = superuser_client.get(changelist).wsgi_request
    if model_admin.has_add_permission(request):
        add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
        assert superuser_client.get(add).status_code == 200, add


def test_admin_is_closed_to_staff_roles(world):
    for user in (world.support, world.manager):
        client = Client()
        client.force_login(user)
        response = client.get(reverse("admin:crm_customer_changelist"))
        assert response.status_code == 302
        assert "/admin/login/" in response.url
