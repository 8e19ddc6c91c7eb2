"""Shared fixtures: staff users of each role and logged-in clients."""

import pytest

from crm.tests.factories import ManagerFactory, SupportUserFactory, UserFactory


@pytest.fixture
def support_user(db):
    return SupportUserFactory(username="support")


@pytest.fixture
def manager(db):
    return ManagerFactory(username="manager")


@pytest.fixture
def admin_user(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def client_support(client, support_user):
    client.force_login(support_user)
    return client


@pytest.fixture
def client_manager(client, manager):
    client.force_login(manager)
    return client


@pytest.fixture
def client_admin(client, admin_user):
    client.force_login(admin_user)
    return client
