"""Celery tasks for credits: thin doors into services, safe to run twice."""

from celery import shared_task

from billing.gateways.stripe_api import StripeServiceError

from . import services


@shared_task(name="credits.ledger_reconcile")
def credit_ledger_reconcile_task() -> int:
    """Read-only check; returns the number of accounts that drifted."""
    return len(services.credit_ledger_reconcile())


@shared_task(name="credits.holds_expire")
def credit_holds_expire_task() -> int:
    """Release holds older than STALE_RESERVATION_SECONDS (a worker died between reserve and settle)."""
    return services.credit_holds_expire()


@shared_task(name="credits.lots_expire")
def credit_lots_expire_task() -> int:
    """Expire the credit lots whose expiry has passed (one ``expiry`` entry each; idempotent)."""
    return services.credit_lots_expire()


@shared_task(name="credits.auto_top_up", bind=True, max_retries=5)
def credit_auto_top_up_task(self, workspace_id: int, attempt_id: int | None = None) -> str:
    """Buy the workspace's auto top-up pack if it still needs it (the service decides under a
    row lock; a second run buys nothing). Retried only when Stripe was unreachable or answered
    5xx/429: the claimed attempt is resumed with the same idempotency key."""
    try:
        return services.auto_top_up_run(workspace_id=workspace_id, attempt_id=attempt_id)
    except StripeServiceError as exc:
        if not exc.retryable:
            raise
        pending = services.auto_top_up_pending_attempt_id(workspace_id=workspace_id)
        raise self.retry(
            exc=exc,
            countdown=60 * (self.request.retries + 1),
            kwargs={"workspace_id": workspace_id, "attempt_id": pending},
        )
