"""Writes for organizations: report ingestion and review, linking to Stripe, meter events,
subscription status. Stripe calls always run outside database transactions and row locks.

Split by concern; import from here.
"""

from .common import BILLABLE_STATUSES, FUTURE_TOLERANCE, METER_WINDOW, SUBSCRIPTION_STATUS_MAP
from .ingest import IngestResult, usage_report_ingest
from .link import TRIAL_DAYS_MAX, organization_link, usage_reports_backfill
from .meter import SEND_LEASE, usage_report_retry, usage_report_send, usage_reports_retry_due
from .review import (
    organization_identity_accept,
    organization_identity_discard,
    organization_ingestion_token_issue,
    organization_ingestion_token_revoke,
    organization_jump_factor_set,
    usage_report_reject,
    usage_report_release,
)
from .subscription import organization_subscription_event_handle, organization_subscription_sync

__all__ = [
    "BILLABLE_STATUSES",
    "FUTURE_TOLERANCE",
    "METER_WINDOW",
    "SEND_LEASE",
    "SUBSCRIPTION_STATUS_MAP",
    "TRIAL_DAYS_MAX",
    "IngestResult",
    "organization_identity_accept",
    "organization_identity_discard",
    "organization_ingestion_token_issue",
    "organization_ingestion_token_revoke",
    "organization_jump_factor_set",
    "organization_link",
    "organization_subscription_event_handle",
    "organization_subscription_sync",
    "usage_report_ingest",
    "usage_report_reject",
    "usage_report_release",
    "usage_report_retry",
    "usage_report_send",
    "usage_reports_backfill",
    "usage_reports_retry_due",
]
