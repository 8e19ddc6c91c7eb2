"""Celery tasks: ids in, service call, retries here. Every task is idempotent (claims)."""

from celery import shared_task

from . import services


@shared_task(
    bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=5, default_retry_delay=60
)
def invitations_send_task(self, *, invitation_ids: list[int], reminder: bool = False) -> int:
    """Email a batch of invitations; each is claimed before sending, so a retry or a
    duplicate delivery never emails anyone twice."""
    try:
        return services.invitations_send(invitation_ids=invitation_ids, reminder=reminder)
    except Exception as exc:
        raise self.retry(exc=exc)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def reminders_send_due_task() -> int:
    """Periodic: queue the due reminders of every live campaign."""
    return services.reminders_send_due()
