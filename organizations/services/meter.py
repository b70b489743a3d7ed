"""Meter events: one Stripe meter event per billable report, sent at most once across workers
(to the simulated Stripe offline: ``billing.gateways.stripe_api``)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from billing.gateways.stripe import StripeServiceError
from billing.gateways.stripe_api import stripe_api_get

from ..models import UsageReport
from .common import METER_WINDOW
from .common import usage_report_send_queue as _queue_send

logger = logging.getLogger("tollgate.organizations")

# How long a worker owns a report it claimed; past it, the retry job may claim it again (the
# identifier keeps Stripe from counting the event twice).
SEND_LEASE = timedelta(minutes=5)


def _claimable(now: datetime) -> Q:
    pending_due = Q(billing_status=UsageReport.BillingStatus.PENDING) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    lease_expired = Q(billing_status=UsageReport.BillingStatus.SENDING, lease_expires_at__lt=now)
    return pending_due | lease_expired


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=settings.ORG_METER_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0))


def usage_report_send(*, report_id, now: datetime | None = None) -> UsageReport | None:
    """Send one report's meter event, at most once across any number of workers.

    A worker first claims the report with a conditional UPDATE (pending → sending, with a
    lease); only the worker whose UPDATE matched calls Stripe. Returns the report, or None
    when another worker owns it or it is not due.
    """
    now = now or timezone.now()
    claimed = UsageReport.objects.filter(_claimable(now), pk=report_id).update(
        billing_status=UsageReport.BillingStatus.SENDING,
        lease_expires_at=now + SEND_LEASE,
        attempts=F("attempts") + 1,
        updated_at=now,
    )
    if not claimed:
        return None
    report = UsageReport.objects.select_related("organization").get(pk=report_id)
    organization = report.organization
    identifier = report.meter_identifier_expected
    sending = UsageReport.objects.filter(pk=report.pk, billing_status=UsageReport.BillingStatus.SENDING)

    if not organization.stripe_customer_id:
        error, retryable = "Organization has no Stripe customer.", False
    elif report.reported_at <= now - METER_WINDOW:
        error, retryable = "Report is older than Stripe's 35-day meter window.", False
    else:
        try:
            stripe_api_get().meter_event_create(
                event_name=settings.STRIPE_METER_EVENT_NAME,
                customer_id=organization.stripe_customer_id,
                value=report.user_count,
                identifier=identifier,
                timestamp=int(report.reported_at.timestamp()),
            )
        except StripeServiceError as exc:
            error, retryable = exc.message, exc.retryable
        else:
            sending.update(
                billing_status=UsageReport.BillingStatus.SENT,
                meter_identifier=identifier,
                sent_at=timezone.now(),
                lease_expires_at=None,
                next_attempt_at=None,
                last_error="",
                updated_at=timezone.now(),
            )
            report.refresh_from_db()
            return report

    # Transient errors are retried with exponential backoff up to the limit; a refusal
    # (bad customer, stale timestamp, Stripe not configured) waits for the operator.
    give_up = not retryable or report.attempts >= settings.ORG_METER_MAX_ATTEMPTS
    logger.warning("meter event for report %s failed (attempt %s): %s", report.pk, report.attempts, error)
    sending.update(
        billing_status=UsageReport.BillingStatus.FAILED if give_up else UsageReport.BillingStatus.PENDING,
        next_attempt_at=None if give_up else now + _backoff(report.attempts),
        lease_expires_at=None,
        last_error=error,
        updated_at=timezone.now(),
    )
    report.refresh_from_db()
    return report


def usage_reports_retry_due(*, now: datetime | None = None, limit: int = 500) -> list[str]:
    """Queue a send for every report that is due (pending past its backoff, or a lease that
    expired because a worker died). Returns the queued ids."""
    now = now or timezone.now()
    ids = [
        str(pk)
        for pk in UsageReport.objects.filter(_claimable(now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    ]
    for report_id in ids:
        _queue_send(report_id)
    return ids


def usage_report_retry(*, report: UsageReport, now: datetime | None = None) -> bool:
    """Operator retry of a failed report: back to pending with a fresh attempt budget."""
    now = now or timezone.now()
    with transaction.atomic():
        updated = UsageReport.objects.filter(
            pk=report.pk, billing_status=UsageReport.BillingStatus.FAILED
        ).update(
            billing_status=UsageReport.BillingStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            updated_at=now,
        )
        if updated:
            transaction.on_commit(lambda: _queue_send(report.pk))
    return bool(updated)
