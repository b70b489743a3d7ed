"""Constants and small helpers shared by the organizations services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ..models import Organization

# Stripe accepts meter events up to 35 days old; reports are validated against the same window.
METER_WINDOW = timedelta(days=35)
# A client clock may run a little ahead (Stripe also allows 5 minutes).
FUTURE_TOLERANCE = timedelta(minutes=5)

BILLABLE_STATUSES = (Organization.Status.TRIAL, Organization.Status.ACTIVE, Organization.Status.PAST_DUE)

# Stripe subscription status -> ours.
SUBSCRIPTION_STATUS_MAP = {
    "trialing": Organization.Status.TRIAL,
    "active": Organization.Status.ACTIVE,
    "past_due": Organization.Status.PAST_DUE,
    "unpaid": Organization.Status.PAST_DUE,
    "incomplete": Organization.Status.PAST_DUE,
    "paused": Organization.Status.PAST_DUE,
    "canceled": Organization.Status.CANCELED,
    "incomplete_expired": Organization.Status.CANCELED,
}


def utc_from_timestamp(ts: int | None) -> datetime | None:
    return datetime.fromtimestamp(int(ts), tz=UTC) if ts else None


def organization_is_billable(organization: Organization) -> bool:
    return organization.is_linked and organization.status in BILLABLE_STATUSES


def usage_report_send_queue(report_id) -> None:
    """Queue the meter event of a committed report (callers wrap it in ``on_commit``)."""
    from ..tasks import usage_report_send_task  # noqa: PLC0415 (organizations.tasks imports this package: queued lazily to avoid a cycle)

    usage_report_send_task.delay(str(report_id))
