"""The operator's side of ingestion: per-organization tokens, queued name/URL changes, and held
reports. Every function here is called from the admin (staff only)."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from core.exceptions import ApiError
from core.locks import lock_objects

from ..ingestion_tokens import ingestion_token_display_prefix, ingestion_token_generate, ingestion_token_hash
from ..models import Organization, UsageReport
from .common import organization_is_billable
from .common import usage_report_send_queue as _queue_send
from .ingest import organization_count_apply

logger = logging.getLogger("tollgate.organizations")


def _locked(organization: Organization) -> Organization:
    (locked,) = lock_objects(Organization.objects.filter(pk=organization.pk))
    return locked


# --- Ingestion tokens ------------------------------------------------------------------------


def organization_ingestion_token_issue(*, organization: Organization, now: datetime | None = None) -> str:
    """Issue (or rotate) the organization's own ingestion token and return it: the only time
    the plaintext exists outside the instance. From now on the shared token and any previous
    token of this organization are refused for it."""
    now = now or timezone.now()
    token = ingestion_token_generate()
    with transaction.atomic():
        locked = _locked(organization)
        locked.ingestion_token_hash = ingestion_token_hash(token)
        locked.ingestion_token_prefix = ingestion_token_display_prefix(token)
        locked.ingestion_token_issued_at = now
        locked.save(
            update_fields=[
                "ingestion_token_hash",
                "ingestion_token_prefix",
                "ingestion_token_issued_at",
                "updated_at",
            ]
        )
    logger.info("ingestion token issued for organization %s", organization.pk)
    organization.refresh_from_db()
    return token


def organization_ingestion_token_revoke(*, organization: Organization) -> bool:
    """Drop the organization's own token: its reports are accepted with the shared token again.
    Returns False when it had none."""
    with transaction.atomic():
        locked = _locked(organization)
        if locked.ingestion_token_hash is None:
            return False
        locked.ingestion_token_hash = None
        locked.ingestion_token_prefix = ""
        locked.ingestion_token_issued_at = None
        locked.save(
            update_fields=[
                "ingestion_token_hash",
                "ingestion_token_prefix",
                "ingestion_token_issued_at",
                "updated_at",
            ]
        )
    logger.info("ingestion token revoked for organization %s", organization.pk)
    organization.refresh_from_db()
    return True


# --- Name and URL changes reported by a linked organization ----------------------------------


def _identity_clear(organization: Organization) -> None:
    organization.pending_name = ""
    organization.pending_instance_url = ""
    organization.pending_identity_at = None


_IDENTITY_FIELDS = ["pending_name", "pending_instance_url", "pending_identity_at", "updated_at"]


def organization_identity_accept(*, organization: Organization) -> bool:
    """Apply the name and URL the organization's reports asked for. Returns False when
    nothing was pending. (The Stripe customer keeps the name it was created with.)"""
    with transaction.atomic():
        locked = _locked(organization)
        if locked.pending_identity_at is None:
            return False
        locked.name = locked.pending_name
        locked.instance_url = locked.pending_instance_url
        _identity_clear(locked)
        locked.save(update_fields=["name", "instance_url", *_IDENTITY_FIELDS])
    organization.refresh_from_db()
    return True


def organization_identity_discard(*, organization: Organization) -> bool:
    """Drop the pending name and URL; the current ones stay. Returns False when none."""
    with transaction.atomic():
        locked = _locked(organization)
        if locked.pending_identity_at is None:
            return False
        _identity_clear(locked)
        locked.save(update_fields=_IDENTITY_FIELDS)
    organization.refresh_from_db()
    return True


def organization_jump_factor_set(*, organization: Organization, factor: int) -> Organization:
    """Set the multiple of the last accepted user count above which reports are held (0: off)."""
    if factor < 0:
        raise ApiError("invalid_request", "The factor must be 0 or more.", param="user_count_jump_factor")
    Organization.objects.filter(pk=organization.pk).update(
        user_count_jump_factor=factor, updated_at=timezone.now()
    )
    organization.refresh_from_db()
    return organization


# --- Held reports ----------------------------------------------------------------------------


def usage_report_release(*, report: UsageReport, now: datetime | None = None) -> bool:
    """Accept a held report as its day's report: from here it goes the way a report accepted on
    arrival goes (a meter event, through the same send service, if the organization is
    billable now; ``unbilled`` otherwise). Returns False when the report is not held; raises
    ``ApiError("conflict")`` when another report was accepted for that day meanwhile.
    """
    now = now or timezone.now()
    with transaction.atomic():
        organization = _locked(report.organization)
        # Re-read under the organization's lock: ingestion takes the same lock first.
        held = UsageReport.objects.filter(pk=report.pk, billing_status=UsageReport.BillingStatus.HELD).first()
        if held is None:
            return False
        day_taken = (
            UsageReport.objects.filter(organization=organization, report_on=held.report_on)
            .exclude(billing_status__in=UsageReport.NOT_ACCEPTED)
            .exists()
        )
        if day_taken:
            raise ApiError("conflict", f"Another report was already accepted for {held.report_on}.")
        billable = organization_is_billable(organization)
        held.billing_status = (
            UsageReport.BillingStatus.PENDING if billable else UsageReport.BillingStatus.UNBILLED
        )
        held.next_attempt_at = now if billable else None
        held.reviewed_at = now
        held.save(update_fields=["billing_status", "next_attempt_at", "reviewed_at", "updated_at"])
        fields = organization_count_apply(organization=organization, report=held)
        if fields:
            organization.save(update_fields=[*fields, "updated_at"])
        if billable:
            transaction.on_commit(lambda: _queue_send(held.pk))
    logger.info("held report %s released", report.pk)
    report.refresh_from_db()
    return True


def usage_report_reject(*, report: UsageReport, now: datetime | None = None) -> bool:
    """Keep a held report as a record but never bill it. Returns False when it is not held."""
    now = now or timezone.now()
    updated = UsageReport.objects.filter(pk=report.pk, billing_status=UsageReport.BillingStatus.HELD).update(
        billing_status=UsageReport.BillingStatus.REJECTED, reviewed_at=now, updated_at=now
    )
    report.refresh_from_db()
    return bool(updated)
