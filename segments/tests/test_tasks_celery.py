"""The ROI task on a real Celery worker over the private Redis broker; the beat schedule; the
management command."""

import datetime as dt
import os
import time
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from crm.tests.factories import CustomerFactory, InteractionFactory, OrderFactory, UserFactory
from segments.models import JobRun, RoiSnapshot

AS_OF = dt.date(2026, 6, 30)


def _some_activity():
    customer = CustomerFactory()
    placed = dt.datetime(2026, 6, 1, 12, tzinfo=timezone.get_default_timezone())
    OrderFactory(customer=customer, placed_at=placed, revenue=Decimal("100"))
    # A plain user: transactional tests may run after the role groups were flushed.
    InteractionFactory(customer=customer, staff=UserFactory(), occurred_at=placed, minutes=30)


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_roi_task_runs_end_to_end_on_a_real_worker():
    assert os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"), "run with make test"
    from config.celery import app
    from segments.tasks import roi_recalculate_task

    _some_activity()
    run = None
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        roi_recalculate_task.delay(as_of=AS_OF.isoformat())
        deadline = time.monotonic() + 30
        while run is None and time.monotonic() < deadline:
            run = JobRun.objects.exclude(status="running").first()
            time.sleep(0.2)
    assert run is not None, "the worker did not run the task within 30 s"
    assert run.status == "succeeded", run.error
    assert run.as_of == AS_OF
    snapshot = RoiSnapshot.objects.get(date=AS_OF, bucket__isnull=True)
    assert snapshot.customers == 1 and snapshot.cost_to_serve == Decimal("20.00")


def test_roi_task_is_configured_for_safe_redelivery():
    from segments.tasks import roi_recalculate_task

    assert roi_recalculate_task.acks_late and roi_recalculate_task.reject_on_worker_lost
    assert roi_recalculate_task.max_retries == 3
    assert roi_recalculate_task.name == "segments.tasks.roi_recalculate_task"


@pytest.mark.django_db
def test_nightly_schedule_is_an_editable_beat_row_at_two():
    task = PeriodicTask.objects.get(name="Nightly ROI recalculation")
    assert task.task == "segments.tasks.roi_recalculate_task" and task.enabled
    assert (task.crontab.hour, task.crontab.minute) == ("2", "0")


@pytest.mark.django_db
def test_command_runs_the_job_and_refuses_bad_dates(capsys):
    _some_activity()
    call_command("recalculate_roi", "--date", AS_OF.isoformat(), "--full")
    out = capsys.readouterr().out
    assert "ROI as of 2026-06-30 (full)" in out and "1 customers refreshed" in out
    assert RoiSnapshot.objects.filter(date=AS_OF).count() == 1
    with pytest.raises(CommandError, match="not a valid date"):
        call_command("recalculate_roi", "--date", "2026-02-30")
    with pytest.raises(CommandError, match="future"):
        call_command("recalculate_roi", "--date", "2999-01-01")
