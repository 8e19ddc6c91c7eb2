"""Every staff URL of crm x anonymous / support / manager."""

import pytest

from crm.tests.factories import CustomerFactory, FollowUpFactory, SocialProfileFactory

pytestmark = pytest.mark.django_db

# (url template, method, support status, manager status)
PAGES = [
    ("/customers/", 200, 200),
    ("/customers/{c}/", 200, 200),
    ("/my/", 200, 200),
    ("/accounts/high-value/", 403, 200),
    ("/accounts/high-value/even-out/", 403, 200),
]

# POST actions with an empty body: anonymous -> login, lacking permission -> 403,
# permitted -> 400 (the form is invalid, nothing saved).
ACTIONS = [
    ("/customers/{c}/effort/", 400, 400),
    ("/customers/{c}/influence/", 403, 302),  # empty value = clear the override
    ("/customers/{c}/social/", 400, 400),
    ("/customers/{c}/social/{p}/", 400, 400),
    ("/customers/{c}/interactions/", 400, 400),
    ("/customers/{c}/cancel/", 400, 400),
    ("/customers/{c}/owner/", 403, 302),  # empty owner = unassign, valid for a manager
    ("/my/follow-ups/{f}/done/", 400, 400),
    ("/accounts/high-value/assign/", 403, 400),
    ("/accounts/high-value/even-out/", 403, 400),
]


@pytest.fixture
def ids():
    customer = CustomerFactory()
    return {
        "c": customer.pk,
        "p": SocialProfileFactory(customer=customer).pk,
        "f": FollowUpFactory(customer=customer).pk,
    }


@pytest.mark.parametrize(("url", "support", "manager_status"), PAGES)
def test_pages_matrix(client, support_user, manager, ids, url, support, manager_status):
    url = url.format(**ids)
    anonymous = client.get(url)
    assert anonymous.status_code == 302
    assert anonymous.url.startswith("/login/")
    client.force_login(support_user)
    assert client.get(url).status_code == support
    client.force_login(manager)
    assert client.get(url).status_code == manager_status


@pytest.mark.parametrize(("url", "support", "manager_status"), ACTIONS)
def test_actions_matrix(client, support_user, manager, ids, url, support, manager_status):
    url = url.format(**ids)
    anonymous = client.post(url)
    assert anonymous.status_code == 302
    assert anonymous.url.startswith("/login/")
    client.force_login(support_user)
    assert client.post(url).status_code == support
    client.force_login(manager)
    assert client.post(url).status_code == manager_status


def test_delete_profile_matrix(client, support_user, ids):
    url = "/customers/{c}/social/{p}/delete/".format(**ids)
    assert client.post(url).url.startswith("/login/")
    client.force_login(support_user)
    assert client.post(url).status_code == 302


def test_user_without_any_role_gets_403(client, ids):
    from crm.tests.factories import UserFactory

    client.force_login(UserFactory())
    assert client.get("/customers/").status_code == 403
    assert client.get("/my/").status_code == 403


@pytest.mark.parametrize(
    "url",
    [
        "/customers/99999999999999999999999/",
        "/customers/0/",
        "/my/follow-ups/99999999999999999999/done/",
    ],
)
def test_out_of_range_ids_are_404(client_support, url):
    assert client_support.get(url).status_code in (404, 405)
    assert client_support.post(url, {"outcome": "x"}).status_code in (404, 405)


def test_action_urls_refuse_get(client_support, ids):
    assert client_support.get("/customers/{c}/effort/".format(**ids)).status_code == 405
