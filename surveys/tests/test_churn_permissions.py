import pytest
from django.utils import timezone

from surveys import churn_services
from surveys.tests.churn_helpers import churned, reason

pytestmark = pytest.mark.django_db


@pytest.fixture
def objects(manager):
    code = reason()
    customer = churned()
    interview = churn_services.churn_interview_record(
        customer=churned(),
        interviewer=manager,
        recorded_by=manager,
        interviewed_on=timezone.localdate(),
        channel="phone",
        primary_reason=code,
    )
    return {"customer": customer.pk, "interview": interview.pk, "reason": code.pk}


# url template, expected status for support, for manager
MATRIX = [
    ("/churn/queue/", 200, 200),
    ("/churn/interviews/", 200, 200),
    ("/churn/interview/{customer}/new/", 200, 200),
    ("/churn/interviews/{interview}/edit/", 200, 200),
    ("/churn/reasons/", 200, 200),
    ("/churn/reasons/new/", 403, 200),
    ("/churn/reasons/{reason}/edit/", 403, 200),
    ("/churn/", 403, 200),
]


@pytest.mark.parametrize(("url", "support", "manager_status"), MATRIX)
def test_anonymous_goes_to_login(client, objects, url, support, manager_status):
    response = client.get(url.format(**objects))
    assert response.status_code == 302
    assert response.url.startswith("/login/")


@pytest.mark.parametrize(("url", "support", "manager_status"), MATRIX)
def test_support_staff(client_support, objects, url, support, manager_status):
    assert client_support.get(url.format(**objects)).status_code == support


@pytest.mark.parametrize(("url", "support", "manager_status"), MATRIX)
def test_managers(client_manager, objects, url, support, manager_status):
    assert client_manager.get(url.format(**objects)).status_code == manager_status


def test_support_cannot_post_reason_codes(client_support, objects):
    response = client_support.post(
        "/churn/reasons/new/", {"code": "z", "category": "price", "label_en": "Z"}
    )
    assert response.status_code == 403


def test_user_without_role_gets_403_on_queue(client):
    from crm.tests.factories import UserFactory

    client.force_login(UserFactory(username="nobody"))
    assert client.get("/churn/queue/").status_code == 403


def test_roles_hold_the_churn_permissions(support_user, manager):
    assert support_user.has_perms(
        [
            "surveys.view_churninterview",
            "surveys.add_churninterview",
            "surveys.change_churninterview",
            "surveys.view_reasoncode",
        ]
    )
    assert not support_user.has_perm("surveys.add_reasoncode")
    assert not support_user.has_perm("surveys.view_churn_report")
    assert manager.has_perms(
        ["surveys.add_reasoncode", "surveys.change_reasoncode", "surveys.view_churn_report"]
    )
