"""/my/?export=csv: the follow-up queue and (table=accounts) the accounts, streamed as CSV."""

import csv
import io

import pytest

from crm.tests.factories import CustomerFactory, FollowUpFactory, SupportUserFactory

pytestmark = pytest.mark.django_db


def read_csv(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_my_queue_csv_lists_own_open_follow_ups(client_support, support_user):
    customer = CustomerFactory(first_name="Ada", last_name="Queue")
    mine = FollowUpFactory(assigned_to=support_user, customer=customer, reason="=Call back")
    FollowUpFactory(assigned_to=SupportUserFactory(), reason="Theirs")
    rows = read_csv(client_support.get("/my/?export=csv"))
    assert rows[0][:3] == ["Follow-up id", "Customer id", "Customer"]
    assert len(rows) == 2
    assert rows[1][0] == str(mine.pk)
    assert rows[1][2] == "Ada Queue"
    assert rows[1][4] == "'=Call back"  # formula-safe
    assert rows[1][6] == mine.due_on.isoformat()


def test_unassigned_queue_csv_refused_to_support(client_support):
    FollowUpFactory(assigned_to=None)
    assert client_support.get("/my/?queue=unassigned&export=csv").status_code == 403


def test_unassigned_queue_csv_for_managers(client_manager):
    follow_up = FollowUpFactory(assigned_to=None)
    rows = read_csv(client_manager.get("/my/?queue=unassigned&export=csv"))
    assert [row[0] for row in rows[1:]] == [str(follow_up.pk)]


def test_my_accounts_csv(client_support, support_user):
    mine = CustomerFactory(owner=support_user, first_name="Mine", email="mine@example.com")
    CustomerFactory(owner=SupportUserFactory(), first_name="Theirs")
    rows = read_csv(client_support.get("/my/?export=csv&table=accounts"))
    assert rows[0][:4] == ["Customer id", "First name", "Last name", "Email"]
    assert rows[1:] == [
        [
            str(mine.pk),
            "Mine",
            mine.last_name,
            "mine@example.com",
            mine.status,
            "" if mine.service_effort is None else str(mine.service_effort),
            str(mine.influence),
            "",
        ]
    ]


def test_my_csv_anonymous_redirected(client):
    response = client.get("/my/?export=csv")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_my_page_links_exports(client_support):
    content = client_support.get("/my/").content.decode()
    assert "export=csv" in content
    assert "table=accounts" in content


def test_my_queue_csv_constant_queries(client_support, support_user, django_assert_max_num_queries):
    for _ in range(20):
        FollowUpFactory(assigned_to=support_user)
    with django_assert_max_num_queries(8):
        rows = read_csv(client_support.get("/my/?export=csv"))
    assert len(rows) == 21
