"""Celery tasks for webhooks: thin doors into ``notifications.delivery``, safe to run twice."""

from celery import shared_task

from .delivery import deliveries_due_ids, webhook_delivery_attempt


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
