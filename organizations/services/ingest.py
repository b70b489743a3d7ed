"""Report ingestion: who may report for an organization, what a report may change, and when a
report is held for the operator instead of billed.

The ingestion token is shared by every instance unless the operator issued an organization its
own, so a report's content is not trusted to rewrite billing: a linked organization's name and
URL only change when the operator accepts them, and a user count far above the last accepted
one waits for review instead of becoming a meter event.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import transaction
from django.utils import timezone

from core.exceptions import ApiError
from core.locks import lock_objects

from ..models import Organization, UsageReport
from ..selectors import IngestionCredential
from .common import organization_is_billable
from .common import usage_report_send_queue as _queue_send

logger = logging.getLogger("tollgate.organizations")

TOKEN_OF_ANOTHER_ORGANIZATION = "This ingestion token may not report for this organization."
SHARED_TOKEN_REFUSED = (
    "This organization reports with its own ingestion token; the shared token is not accepted for it."
)


@dataclass(frozen=True)
class IngestResult:
    report: UsageReport
    organization: Organization
    duplicate: bool

    @property
    def held(self) -> bool:
        return self.report.billing_status == UsageReport.BillingStatus.HELD


def _credential_check(*, organization: Organization, credential: IngestionCredential) -> None:
    """Under the organization's row lock, so a token issued, rotated or revoked a moment ago
    already counts. An organization with its own token accepts only that token."""
    own = organization.ingestion_token_hash
    presented = credential.token_hash
    if own is None and presented is None:
        return
    if own is not None and presented is not None and hmac.compare_digest(own, presented):
        return
    raise ApiError("forbidden", SHARED_TOKEN_REFUSED if presented is None else TOKEN_OF_ANOTHER_ORGANIZATION)


def _hold_reason(*, organization: Organization, user_count: int) -> str:
    """Why a report must wait for review, or "" to accept it. The baseline is the last accepted
    count (a count of 0 counts as 1, so 0 → 5 is not "infinitely" many times more); the
    first report of an organization has no baseline and is never held."""
    factor = organization.user_count_jump_factor
    if not factor or organization.last_report_at is None:
        return ""
    baseline = organization.latest_user_count
    if user_count <= factor * max(baseline, 1):
        return ""
    return f"user_count {user_count} is more than {factor}x the last accepted count ({baseline})"


def _identity_apply(
    *, organization: Organization, name: str, instance_url: str, reported_at: datetime, now: datetime
) -> list[str]:
    """Apply (unlinked) or queue for the operator (linked) the name and URL a report carries.

    A late report never overrides what a newer one said. Returns the fields to save.
    """
    if organization.last_report_at is not None and reported_at < organization.last_report_at:
        return []
    if (name, instance_url) == (organization.name, organization.instance_url):
        return []
    if organization.is_linked:
        organization.pending_name = name
        organization.pending_instance_url = instance_url
        organization.pending_identity_at = now
        return ["pending_name", "pending_instance_url", "pending_identity_at"]
    organization.name = name
    organization.instance_url = instance_url
    return ["name", "instance_url"]


def organization_count_apply(*, organization: Organization, report: UsageReport) -> list[str]:
    """Make an accepted report the organization's latest count unless a newer one exists
    (an instance catching up must not overwrite a newer count). Returns the fields to save."""
    if organization.last_report_at is None or report.reported_at >= organization.last_report_at:
        organization.latest_user_count = report.user_count
        organization.last_report_at = report.reported_at
        return ["latest_user_count", "last_report_at"]
    return []


def usage_report_ingest(
    *,
    organization_id: uuid.UUID,
    organization_name: str,
    instance_url: str,
    user_count: int,
    reported_at: datetime,
    credential: IngestionCredential,
    now: datetime | None = None,
) -> IngestResult:
    """Store an instance's daily report; the first one creates the organization as pending.

    One accepted report per organization per UTC day (of ``reported_at``): a repeat returns
    the first report unchanged. A report whose user count jumps past the organization's
    factor is stored ``held`` and changes nothing else; it does not take the day's slot, so a
    genuine report that day is still accepted. The organization row is locked so concurrent
    reports serialise, and a billable report's meter event is queued only once committed.
    Raises ``ApiError("forbidden")`` when the credential may not report for the organization.
    """
    now = now or timezone.now()
    if credential.organization_id is not None and credential.organization_id != organization_id:
        raise ApiError("forbidden", TOKEN_OF_ANOTHER_ORGANIZATION)  # and it never creates one
    report_on = reported_at.astimezone(UTC).date()
    with transaction.atomic():
        Organization.objects.get_or_create(
            pk=organization_id,
            defaults={"name": organization_name, "instance_url": instance_url, "first_seen_at": now},
        )
        (organization,) = lock_objects(Organization.objects.filter(pk=organization_id))
        _credential_check(organization=organization, credential=credential)
        same_day = list(
            UsageReport.objects.filter(organization=organization, report_on=report_on).exclude(
                billing_status=UsageReport.BillingStatus.REJECTED
            )
        )
        accepted = next((r for r in same_day if r.billing_status != UsageReport.BillingStatus.HELD), None)
        if accepted is not None:
            return IngestResult(report=accepted, organization=organization, duplicate=True)

        hold_reason = _hold_reason(organization=organization, user_count=user_count)
        if hold_reason:
            held = next((r for r in same_day if r.billing_status == UsageReport.BillingStatus.HELD), None)
            if held is not None:
                return IngestResult(report=held, organization=organization, duplicate=True)
            report = UsageReport.objects.create(
                organization=organization,
                report_on=report_on,
                user_count=user_count,
                reported_at=reported_at,
                deployment_type=organization.deployment_type,
                billing_status=UsageReport.BillingStatus.HELD,
                hold_reason=hold_reason,
            )
            logger.warning("report %s of organization %s held: %s", report.pk, organization.pk, hold_reason)
            return IngestResult(report=report, organization=organization, duplicate=False)

        billable = organization_is_billable(organization)
        report = UsageReport.objects.create(
            organization=organization,
            report_on=report_on,
            user_count=user_count,
            reported_at=reported_at,
            deployment_type=organization.deployment_type,
            billing_status=UsageReport.BillingStatus.PENDING
            if billable
            else UsageReport.BillingStatus.UNBILLED,
            next_attempt_at=now if billable else None,
        )
        fields = _identity_apply(
            organization=organization,
            name=organization_name,
            instance_url=instance_url,
            reported_at=reported_at,
            now=now,
        )
        fields += organization_count_apply(organization=organization, report=report)
        organization.save(update_fields=[*fields, "updated_at"])
        if billable:
            transaction.on_commit(lambda: _queue_send(report.pk))
    return IngestResult(report=report, organization=organization, duplicate=False)
