"""Reads behind the operator's customer page ("workspace 360"): one workspace's plan and quota
periods, keys, usage and spend, credits, payments and audit log. Nothing here writes.

Every read is bounded: usage and spend come from ``proxy.UsageDailyRollup`` (one row per
provider and UTC day) and the credits ledger; the raw call log is read only for the last
``RECENT_CALLS_LIMIT`` calls, through its (workspace, -created_at) index. Lists stop at a few
dozen rows: the full history is in each model's own admin changelist, filtered by workspace.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from accounts.models import ApiKey, AuditEvent, Membership, Workspace
from accounts.selectors import api_key_list
from billing.models import PaymentTransaction
from billing.operator_plan import plan_change_choices, plan_change_route
from billing.selectors import subscription_get
from core.money import usd
from credits.models import LedgerEntry
from credits.selectors import credit_balance_get, credit_ledger_list
from credits.services import credit_lots_get
from proxy.models import UsageDailyRollup

from .customer import plan_card_get, quota_bars_get, usage_provider_totals_get, usage_recent_calls_list

USAGE_DAYS = 30
RECENT_CALLS_LIMIT = 20
LEDGER_LIMIT = 25
PAYMENTS_LIMIT = 25
AUDIT_LIMIT = 30
KEYS_LIMIT = 50


@dataclass(frozen=True)
class KeyRow:
    key: ApiKey
    status: str  # "active" | "expiring" | "expired" | "revoked"


def _key_status(key: ApiKey, *, now: datetime) -> str:
    if key.revoked_at is not None and key.revoked_at <= now:
        return "revoked"
    if key.expires_at is not None:
        return "expired" if key.expires_at <= now else "expiring"
    return "active"


@dataclass(frozen=True)
class UsageSummary:
    since: datetime
    requests: int
    tokens: int
    emails: int
    errors: int
    cost_usd: Decimal  # the operator's provider cost over the window
    credits_spent: int  # credits consumed over the window (the customer's spend)
    days: list[dict]  # one row per active UTC day, newest first
    providers: list[dict]


def _usage_summary(*, workspace: Workspace, now: datetime) -> UsageSummary:
    today = now.astimezone(UTC).date()
    since_day = today - timedelta(days=USAGE_DAYS - 1)
    since = datetime.combine(since_day, datetime.min.time(), tzinfo=UTC)
    days = list(
        UsageDailyRollup.objects.filter(workspace=workspace, day__gte=since_day, day__lte=today)
        .values("day")
        .annotate(
            requests=Sum("requests"),
            tokens=Sum("tokens"),
            emails=Sum("emails"),
            errors=Sum("errors"),
            cost_usd=Sum("cost_usd"),
        )
        .order_by("-day")
    )
    spent = (
        LedgerEntry.objects.filter(workspace=workspace, kind=LedgerEntry.Kind.CONSUME, created_at__gte=since)
        .aggregate(total=Sum("amount"))
        .get("total")
    )
    return UsageSummary(
        since=since,
        requests=sum(row["requests"] or 0 for row in days),
        tokens=sum(row["tokens"] or 0 for row in days),
        emails=sum(row["emails"] or 0 for row in days),
        errors=sum(row["errors"] or 0 for row in days),
        cost_usd=usd(sum((row["cost_usd"] or 0 for row in days), Decimal(0))),
        credits_spent=-(spent or 0),
        days=days,
        providers=usage_provider_totals_get(workspace=workspace, today=today, days=USAGE_DAYS),
    )


def workspace_360_get(*, workspace: Workspace, now: datetime | None = None) -> dict:
    """Everything the customer page shows about ``workspace`` (a fixed number of queries)."""
    now = now or timezone.now()
    subscription = subscription_get(workspace=workspace)
    keys = list(api_key_list(workspace=workspace)[:KEYS_LIMIT])
    return {
        "workspace": workspace,
        "members": list(
            Membership.objects.filter(workspace=workspace)
            .select_related("user")
            .order_by("role", "user__email")
        ),
        "plan": plan_card_get(workspace=workspace, now=now),
        "subscription": subscription,
        "plan_change_route": plan_change_route(subscription),
        "plan_choices": plan_change_choices(subscription=subscription),
        "quotas": quota_bars_get(workspace=workspace, now=now),
        "keys": [KeyRow(key=key, status=_key_status(key, now=now)) for key in keys],
        "keys_truncated": len(keys) == KEYS_LIMIT,
        "usage": _usage_summary(workspace=workspace, now=now),
        "recent_calls": list(usage_recent_calls_list(workspace=workspace, limit=RECENT_CALLS_LIMIT)),
        "credits": credit_balance_get(workspace=workspace),
        "ledger": list(credit_ledger_list(workspace=workspace)[:LEDGER_LIMIT]),
        "lots": credit_lots_get(workspace=workspace),
        "payments": list(
            PaymentTransaction.objects.filter(workspace=workspace).order_by("-created_at")[:PAYMENTS_LIMIT]
        ),
        "audit": list(
            AuditEvent.objects.filter(workspace=workspace).order_by("-created_at", "-id")[:AUDIT_LIMIT]
        ),
        "generated_at": now,
    }
