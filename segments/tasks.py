"""Celery tasks for segments: ISO date in, service call, retries here."""

from celery import shared_task
from django.db import OperationalError

from .jobs import roi_recalculate


@shared_task(
    name="segments.tasks.roi_recalculate_task",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=30,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=3,
)
def roi_recalculate_task(as_of: str | None = None, full: bool = False) -> dict:
    """The nightly ROI job (beat: "Nightly ROI recalculation", 02:00). `as_of` is an ISO date,
    default today. Idempotent per date, so a redelivery after a lost worker is harmless; a run
    refused because another is in progress is not retried (it is recorded as failed)."""
    run = roi_recalculate(as_of=as_of, full=full)
    return {"job_run": run.pk, "status": run.status, "as_of": run.as_of.isoformat()}
