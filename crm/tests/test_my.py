import datetime as dt

import pytest
from django.utils import timezone

from crm.models import FollowUp, FollowUpStatus
from crm.tests.factories import CustomerFactory, FollowUpFactory, SupportUserFactory

pytestmark = pytest.mark.django_db


def test_my_work_lists_own_open_follow_ups_due_first(client_support, support_user):
    today = timezone.localdate()
    later = FollowUpFactory(assigned_to=support_user, due_on=today + dt.timedelta(days=3))
    overdue = FollowUpFactory(assigned_to=support_user, due_on=today - dt.timedelta(days=2))
    due_today = FollowUpFactory(assigned_to=support_user, due_on=today)
    FollowUpFactory(assigned_to=SupportUserFactory(), due_on=today)  # someone else's
    FollowUpFactory(assigned_to=None, due_on=today)  # unassigned queue
    FollowUpFactory(
        assigned_to=support_user,
        status=FollowUpStatus.DONE,
        completed_at=timezone.now(),
        due_on=today,
    )
    response = client_support.get("/my/")
    assert response.status_code == 200
    # The support queue's order (crm/tests/test_my_queue.py): with no bucket ROI, decile or
    # influence to tell them apart, the oldest follow-up comes first, whatever its due date.
    assert [f.pk for f in response.context["follow_ups"]] == [later.pk, overdue.pk, due_today.pk]


def test_my_work_lists_own_accounts(client_support, support_user):
    mine = CustomerFactory(owner=support_user, first_name="Mine")
    CustomerFactory(first_name="Theirs", owner=SupportUserFactory())
    response = client_support.get("/my/")
    assert [c.pk for c in response.context["accounts"]] == [mine.pk]
    assert b"Mine" in response.content


def test_my_work_constant_queries(client_support, support_user, django_assert_max_num_queries):
    for _ in range(30):
        FollowUpFactory(assigned_to=support_user, customer=CustomerFactory(owner=support_user))
    with django_assert_max_num_queries(8):
        assert client_support.get("/my/").status_code == 200


def test_follow_up_done_records_outcome(client_support, support_user):
    follow_up = FollowUpFactory(assigned_to=support_user)
    response = client_support.post(f"/my/follow-ups/{follow_up.pk}/done/", {"outcome": "Called"})
    assert response.status_code == 302
    follow_up.refresh_from_db()
    assert follow_up.status == FollowUpStatus.DONE
    assert follow_up.outcome == "Called"
    assert follow_up.completed_by == support_user
    assert follow_up.completed_at is not None


@pytest.mark.parametrize("data", [{}, {"outcome": "   "}, {"outcome": "x" * 2001}])
def test_follow_up_done_needs_outcome(client_support, support_user, data):
    follow_up = FollowUpFactory(assigned_to=support_user)
    response = client_support.post(f"/my/follow-ups/{follow_up.pk}/done/", data)
    assert response.status_code == 400
    assert FollowUp.objects.get(pk=follow_up.pk).status == FollowUpStatus.OPEN


def test_follow_up_done_twice_is_refused(client_support, support_user):
    follow_up = FollowUpFactory(assigned_to=support_user)
    client_support.post(f"/my/follow-ups/{follow_up.pk}/done/", {"outcome": "Called"})
    again = client_support.post(f"/my/follow-ups/{follow_up.pk}/done/", {"outcome": "Again"})
    assert again.status_code == 400
    assert FollowUp.objects.get(pk=follow_up.pk).outcome == "Called"


def test_follow_up_done_unknown_is_404(client_support):
    assert client_support.post("/my/follow-ups/999999/done/", {"outcome": "x"}).status_code == 404
