"""Campaign emails through the real Redis broker and an in-process Celery worker."""

import os
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.core import mail

from crm.tests.factories import CustomerFactory, UserFactory
from surveys import services
from surveys.models import Invitation

from .survey_helpers import make_survey


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_campaign_emails_go_through_the_broker_once(settings):
    assert os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"), "run with make test"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox = []
    from config.celery import app

    CustomerFactory.create_batch(3, city="Incheon")
    campaign = services.campaign_create(
        survey=make_survey(),
        name="Broker",
        audience_kind="filter",
        audience_query="city=Incheon",
        created_by=UserFactory(),
    )
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        services.campaign_send(campaign=campaign)
        services.campaign_send(campaign=campaign)  # a second click queues nothing new
        deadline = time.monotonic() + 30
        while Invitation.objects.filter(sent_at__isnull=True).exists():
            assert time.monotonic() < deadline, "the worker did not send within 30 s"
            time.sleep(0.2)
    assert len(mail.outbox) == 3
    assert sorted(m.to[0] for m in mail.outbox) == sorted(
        Invitation.objects.values_list("customer__email", flat=True)
    )


def test_send_task_is_safe_to_redeliver():
    from surveys.tasks import invitations_send_task, reminders_send_due_task

    assert invitations_send_task.acks_late and invitations_send_task.reject_on_worker_lost
    assert reminders_send_due_task.acks_late and reminders_send_due_task.reject_on_worker_lost
