"""Campaign sending: audiences, skipped counts, idempotency, reminders, email content."""

import datetime as dt

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from config.celery import app
from crm.tests.factories import CustomerFactory, UserFactory
from surveys import selectors, services, tokens
from surveys.models import Invitation, Response

from .survey_helpers import (  # noqa: F401 - fixture
    _fresh_rate_limit,
    make_campaign,
    make_invitation,
    make_survey,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager_celery(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = old


@pytest.fixture
def send(django_capture_on_commit_callbacks, eager_celery):
    def _send(campaign):
        with django_capture_on_commit_callbacks(execute=True):
            return services.campaign_send(campaign=campaign)

    return _send


def _campaign_for_city(city, manager, **kwargs):
    return services.campaign_create(
        survey=make_survey(),
        name="Seoul check",
        audience_kind="filter",
        audience_query=f"?city={city}",
        created_by=manager,
        **kwargs,
    )


def test_sending_twice_never_emails_anyone_twice(send, manager):
    owner = UserFactory(first_name="Jisoo", last_name="Park", email="jisoo@shop.kr")
    owner.job_title = "Account manager"
    owner.save()
    CustomerFactory.create_batch(3, city="Busan", owner=owner)
    CustomerFactory(city="Busan", email_opt_out=True)
    CustomerFactory(city="Busan", email="")
    CustomerFactory(city="Seoul")  # outside the audience
    campaign = _campaign_for_city("Busan", manager)

    first = send(campaign)
    assert (first.invited, first.queued) == (3, 3)
    assert (first.skipped_opt_out, first.skipped_no_email) == (1, 1)
    assert len(mail.outbox) == 3
    second = send(campaign)
    assert (second.invited, second.queued, second.already_invited) == (0, 0, 3)
    assert len(mail.outbox) == 3
    # A duplicated task delivery claims nothing either.
    ids = list(Invitation.objects.values_list("id", flat=True))
    assert services.invitations_send(invitation_ids=ids) == 0
    assert len(mail.outbox) == 3

    campaign.refresh_from_db()
    assert (campaign.invited_count, campaign.skipped_opt_out, campaign.skipped_no_email) == (
        3,
        1,
        1,
    )
    assert Invitation.objects.filter(sent_at__isnull=False, token_hash__isnull=False).count() == 3

    message = mail.outbox[0]
    assert "Jisoo Park" in message.body and "Account manager" in message.body
    assert message.reply_to == ["jisoo@shop.kr"]
    html = message.alternatives[0][0]
    assert "/s/" in html and "Jisoo Park" in html
    # The link in the email works; the database only knows its hash.
    token = message.body.split("/s/")[1].split("/")[0]
    assert Invitation.objects.filter(token_hash=tokens.token_hash(token)).exists()
    assert not Invitation.objects.filter(token_hash=token).exists()


def test_new_audience_members_are_invited_on_the_next_send(send, manager):
    CustomerFactory(city="Daegu")
    campaign = _campaign_for_city("Daegu", manager)
    send(campaign)
    CustomerFactory(city="Daegu")
    again = send(campaign)
    assert (again.invited, again.queued) == (1, 1)
    assert len(mail.outbox) == 2


def test_email_is_in_the_customer_language_with_a_team_signature(send, manager):
    CustomerFactory(city="Jeju", preferred_language="ko", owner=None)
    campaign = _campaign_for_city("Jeju", manager)
    send(campaign)
    (message,) = mail.outbox
    assert "서비스 점검" in message.subject
    assert "customer care team" in message.body or "고객" in message.body


def test_empty_audience_is_refused(manager):
    with pytest.raises(ValidationError) as exc:
        _campaign_for_city("Nowhere", manager)
    assert "audience is empty" in str(exc.value)


def test_audience_of_only_opted_out_customers_cannot_be_sent(send, manager):
    CustomerFactory(city="Ulsan", email_opt_out=True)
    campaign = _campaign_for_city("Ulsan", manager)
    with pytest.raises(ValidationError) as exc:
        send(campaign)
    assert "Nobody in this audience can be emailed" in str(exc.value)
    assert not Invitation.objects.exists()


def test_malformed_filter_is_refused(manager):
    CustomerFactory(city="Seoul")
    with pytest.raises(ValidationError) as exc:
        services.campaign_create(
            survey=make_survey(),
            name="x",
            audience_kind="filter",
            audience_query="status=bogus",
            created_by=manager,
        )
    assert "status" in str(exc.value)


def test_survey_without_questions_and_past_expiry_are_refused(manager):
    customer = CustomerFactory()
    with pytest.raises(ValidationError, match="no questions"):
        services.campaign_create(
            survey=make_survey(kinds=[]),
            name="x",
            audience_kind="customer",
            audience_customer=customer,
            created_by=manager,
        )
    with pytest.raises(ValidationError, match="future"):
        services.campaign_create(
            survey=make_survey(),
            name="x",
            audience_kind="customer",
            audience_customer=customer,
            expires_at=timezone.now() - dt.timedelta(days=1),
            created_by=manager,
        )


def test_default_expiry_is_30_days_and_one_customer_audience(send, manager):
    customer = CustomerFactory()
    CustomerFactory()
    campaign = services.campaign_create(
        survey=make_survey(),
        name="one",
        audience_kind="customer",
        audience_customer=customer,
        created_by=manager,
    )
    delta = campaign.expires_at - timezone.now()
    assert dt.timedelta(days=29, hours=23) < delta <= dt.timedelta(days=30)
    assert send(campaign).queued == 1
    assert mail.outbox[0].to == [customer.email]


def test_one_reminder_to_non_responders_after_the_delay(
    django_capture_on_commit_callbacks, eager_celery
):
    campaign = make_campaign(reminder_after_days=5)
    due, _ = make_invitation(campaign, sent_days_ago=6)
    too_early, _ = make_invitation(campaign, sent_days_ago=2)
    answered, _ = make_invitation(campaign, sent_days_ago=6)
    Response.objects.create(
        invitation=answered,
        campaign=campaign,
        survey=campaign.survey,
        customer=answered.customer,
    )
    opted_out, _ = make_invitation(campaign, CustomerFactory(email_opt_out=True), sent_days_ago=6)
    assert list(selectors.reminders_due(campaign=campaign)) == [due]
    with django_capture_on_commit_callbacks(execute=True):
        assert services.reminders_send_due() == 1
    assert [m.to for m in mail.outbox] == [[due.customer.email]]
    assert "Reminder" in mail.outbox[0].subject
    due.refresh_from_db()
    assert due.reminded_at is not None and due.reminder_token_hash
    with django_capture_on_commit_callbacks(execute=True):
        assert services.reminders_send_due() == 0
    assert len(mail.outbox) == 1


def test_failed_email_gives_the_claim_back(eager_celery, settings, monkeypatch):
    campaign = make_campaign()
    invitation = Invitation.objects.create(campaign=campaign, customer=CustomerFactory())

    def boom(self, messages):
        raise ConnectionError("smtp down")

    monkeypatch.setattr("django.core.mail.backends.locmem.EmailBackend.send_messages", boom)
    with pytest.raises(ConnectionError):
        services.invitations_send(invitation_ids=[invitation.pk])
    invitation.refresh_from_db()
    assert invitation.sent_at is None and invitation.token_hash is None
    monkeypatch.undo()
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert services.invitations_send(invitation_ids=[invitation.pk]) == 1


def test_bucket_audience_uses_current_membership(send, manager):
    from segments.models import Bucket, CurrentMembership

    bucket = Bucket.objects.create(name="Loyal", priority=1)
    inside = CustomerFactory()
    CustomerFactory()
    CurrentMembership.objects.create(customer=inside, bucket=bucket, since=timezone.localdate())
    campaign = services.campaign_create(
        survey=make_survey(),
        name="Loyal",
        audience_kind="bucket",
        audience_bucket_id=bucket.pk,
        created_by=manager,
    )
    assert send(campaign).queued == 1
    assert mail.outbox[0].to == [inside.email]


def test_reminders_run_hourly_from_the_beat_schedule():
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(name="Survey reminders")
    assert task.task == "surveys.tasks.reminders_send_due_task" and task.enabled
    assert (task.interval.every, task.interval.period) == (1, "hours")
    assert task.task in app.tasks
