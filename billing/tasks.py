"""Celery tasks: thin doors into services, safe to run twice (each service checks state)."""

from celery import shared_task

from . import services
from .gateways.stripe import (
    StripeServiceError,
    subscription_stripe_cancel,
    subscriptions_replaced_cancel_pending,
)


@shared_task(name="billing.tasks.quota_period_rollover")
def quota_period_rollover_task() -> dict:
    return services.quota_period_rollover()


@shared_task(name="billing.tasks.quota_reservations_release_stale")
def quota_reservations_release_stale_task() -> int:
    return services.quota_reservations_release_stale()


@shared_task(name="billing.tasks.quota_alert_send")
def quota_alert_send_task(
    *, meter: str, counter_id: int, workspace_id: int | None = None, user_id: int | None = None
) -> list[int]:
    # ``user_id`` only: queued before the tenant became the workspace; the counter (now its
    # personal workspace's) says whose it is.
    return services.quota_alert_send(workspace_id=workspace_id, meter=meter, counter_id=counter_id)


@shared_task(name="billing.tasks.plan_active_email")
def plan_active_email_task(
    *, subscription_id: int, reveal_url: str = "", reveal_user_id: int | None = None
) -> bool:
    # Not retried automatically: a second email would carry a link already consumed or expired.
    return services.plan_active_email_send(
        subscription_id=subscription_id, reveal_url=reveal_url, reveal_user_id=reveal_user_id
    )


@shared_task(name="billing.tasks.subscription_payment_failed_email")
def subscription_payment_failed_email_task(*, subscription_id: int) -> bool:
    return services.subscription_payment_failed_email_send(subscription_id=subscription_id)


@shared_task(name="billing.tasks.chargily_periods_expire")
def chargily_periods_expire_task() -> int:
    return services.chargily_periods_expire()


@shared_task(name="billing.tasks.chargily_renewal_reminders")
def chargily_renewal_reminders_task() -> int:
    # Each reminder is marked sent in the same transaction as the email: a rerun sends none twice.
    return services.chargily_renewal_reminders_send()


@shared_task(bind=True, name="billing.tasks.subscription_stripe_cancel", max_retries=5)
def subscription_stripe_cancel_task(self, *, subscription_id: int) -> bool:
    try:
        return subscription_stripe_cancel(subscription_id=subscription_id)
    except StripeServiceError as exc:
        if not exc.retryable:
            raise
        # Stripe unreachable or rate limited: try again soon; the beat sweeper is the backstop.
        raise self.retry(exc=exc, countdown=60 * (self.request.retries + 1))


@shared_task(name="billing.tasks.subscriptions_replaced_cancel_pending")
def subscriptions_replaced_cancel_pending_task() -> int:
    return subscriptions_replaced_cancel_pending()
