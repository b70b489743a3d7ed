"""Celery tasks for webhooks: thin doors into ``notifications.delivery``, safe to run twice."""

from celery import shared_task

from .delivery import deliveries_due_ids, webhook_delivery_attempt
from .emails import threshold_email_send


@shared_task(name="notifications.deliver")
def webhook_deliver_task(delivery_id: int) -> str | None:
    """One attempt of one delivery (a no-op unless it is due: see ``webhook_delivery_attempt``).
    No Celery retry: a failure schedules ``next_attempt_at`` and the sweep queues it again."""
    return webhook_delivery_attempt(delivery_id=delivery_id)


@shared_task(name="notifications.deliveries_sweep")
def webhook_deliveries_sweep_task() -> int:
    """Queue every due delivery (retries, and first attempts whose queueing was lost)."""
    due = deliveries_due_ids()
    for delivery_id in due:
        webhook_deliver_task.delay(delivery_id)
    return len(due)


@shared_task(name="notifications.threshold_email")
def threshold_email_task(*, workspace_id: int, event: str, data: dict) -> bool:
    """The email of a reached threshold, queued once by the call that reached it. Not retried:
    a second attempt could send it twice."""
    return threshold_email_send(workspace_id=workspace_id, event=event, data=data)
