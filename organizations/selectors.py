"""Reads for organizations. Organizations belong to the operator, not to users, so these
selectors take no ``user``; the staff-only check lives in the APIs and the admin."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet

from .models import Organization, UsageReport


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


def usage_report_list(*, organization: Organization) -> QuerySet[UsageReport]:
    return UsageReport.objects.filter(organization=organization).order_by("-report_on")
