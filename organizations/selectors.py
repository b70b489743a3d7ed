"""Reads for organizations. Organizations belong to the operator, not to users, so these
selectors take no ``user``; the staff-only check lives in the APIs and the admin."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from .ingestion_tokens import ingestion_token_hash, ingestion_token_looks_valid
from .models import Organization, UsageReport


@dataclass(frozen=True)
class IngestionCredential:
    """Who is reporting. ``token_hash`` None: the shared token, accepted only for organizations
    without their own; otherwise the hash of an organization's token, which
    ``usage_report_ingest`` checks again under the organization's row lock (so a token revoked
    or rotated meanwhile is refused)."""

    token_hash: str | None = None
    organization_id: uuid.UUID | None = None

    @property
    def is_shared(self) -> bool:
        return self.token_hash is None


SHARED_CREDENTIAL = IngestionCredential()


def ingestion_credential_resolve(*, presented: str) -> IngestionCredential | None:
    """The credential a bearer token stands for, or None (answer 401).

    Shared tokens are compared in constant time; an organization's token is found by its
    SHA-256 (an indexed lookup that reveals nothing about the token), and only if it has the
    token's shape, so garbage costs no query.
    """
    if billing_token_is_valid(presented=presented):
        return SHARED_CREDENTIAL
    if not ingestion_token_looks_valid(presented):
        return None
    digest = ingestion_token_hash(presented)
    organization_id = (
        Organization.objects.filter(ingestion_token_hash=digest).values_list("pk", flat=True).first()
    )
    if organization_id is None:
        return None
    return IngestionCredential(token_hash=digest, organization_id=organization_id)


def billing_token_is_valid(*, presented: str) -> bool:
    """Constant-time check of an instance's token against every configured token (several
    are accepted while a rotation is in progress). No configured token accepts nothing."""
    presented_bytes = presented.encode()
    valid = False
    for token in settings.BILLING_API_TOKEN:
        if token:
            # No short-circuit: the time taken does not depend on which token matched.
            valid = hmac.compare_digest(presented_bytes, token.encode()) | valid
    return bool(presented) and valid


def organization_get(*, organization_id) -> Organization | None:
    try:
        pk = uuid.UUID(str(organization_id))
    except ValueError:
        return None
    return Organization.objects.filter(pk=pk).first()


def organization_list(*, linked: bool | None = None) -> QuerySet[Organization]:
    qs = Organization.objects.all()
    if linked is True:
        qs = qs.filter(stripe_subscription_id__isnull=False)
    elif linked is False:
        qs = qs.filter(stripe_subscription_id__isnull=True)
    return qs.order_by("-created_at")


@dataclass(frozen=True)
class OrganizationsOverview:
    pending: list[Organization]
    linked: list[Organization]

    @property
    def summary(self) -> dict[str, int]:
        return {
            "total": len(self.pending) + len(self.linked),
            "linked": len(self.linked),
            "pending": len(self.pending),
        }


def organizations_overview() -> OrganizationsOverview:
    """Every organization split into pending (not linked) and linked, in one query."""
    pending, linked = [], []
    for organization in organization_list():
        (linked if organization.is_linked else pending).append(organization)
    return OrganizationsOverview(pending=pending, linked=linked)


# A linked report not sent after this long is drift, not just a retry in progress (the retry
# back-off of ORG_METER_MAX_ATTEMPTS attempts is well under a day with the defaults).
USAGE_REPORT_SEND_GRACE = timedelta(days=1)


def usage_report_reconcile(*, now: datetime | None = None) -> list[dict]:
    """Reports whose meter event is missing or inconsistent with what we recorded.

    Read-only (the nightly reconciliation records the result); one query. A report is drift when
    it is ``sent`` without the identifier derived from its id (Stripe would not deduplicate a
    resend) or without ``sent_at``; when it is ``failed`` (waits for the operator); or when an
    organization is linked and the report is still not sent a day after it arrived.
    """
    now = now or timezone.now()
    statuses = UsageReport.BillingStatus
    overdue = now - USAGE_REPORT_SEND_GRACE
    rows = UsageReport.objects.filter(
        Q(billing_status=statuses.SENT)
        | Q(billing_status=statuses.FAILED)
        | Q(
            billing_status__in=[statuses.PENDING, statuses.SENDING],
            created_at__lt=overdue,
        )
    ).only(
        "pk", "organization_id", "report_on", "user_count", "billing_status", "meter_identifier", "sent_at"
    )
    drift = []
    for report in rows.iterator(chunk_size=1000):
        expected = report.meter_identifier_expected
        if report.billing_status == statuses.SENT:
            if report.meter_identifier == expected and report.sent_at is not None:
                continue
            problem = "sent without the expected meter identifier or sent_at"
            actual = report.meter_identifier or "(none)"
        elif report.billing_status == statuses.FAILED:
            problem, actual = "meter event failed; waits for the operator", "failed"
        else:
            problem, actual = "meter event not sent a day after the report", report.billing_status
        drift.append(
            {
                "report_id": str(report.pk),
                "organization_id": str(report.organization_id),
                "report_on": report.report_on.isoformat(),
                "user_count": report.user_count,
                "billing_status": report.billing_status,
                "expected": expected,
                "actual": actual,
                "problem": problem,
            }
        )
    return drift
