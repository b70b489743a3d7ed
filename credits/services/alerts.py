"""Upsell events, the balance alerts (low, depleted, and their resolution by a top-up) and the
ledger reconciliation."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Sum
from django.template.loader import render_to_string

from accounts.models import Workspace
from accounts.selectors import workspace_billing_emails
from core.exceptions import ApiError
from notifications.selectors import notification_settings_get
from notifications.thresholds import NO_PERIOD, threshold_levels_observe, threshold_resolved

from ..models import CreditAccount, CreditHold, CreditPack, LedgerEntry, UpsellEvent
from ..selectors import credit_balance_get

logger = logging.getLogger("tollgate.credits")


def upsell_event_record(*, workspace: Workspace, kind: str, pack: CreditPack | None = None) -> UpsellEvent:
    if kind not in UpsellEvent.Kind.values:
        raise ApiError("invalid_request", f"Unknown upsell event kind: {kind}", param="kind")
    return UpsellEvent.objects.create(workspace=workspace, kind=kind, pack=pack)


def credit_balance_alerts_check(*, workspace_id: int, balance: int, available: int) -> None:
    """After a debit, in its transaction: ``credits.low`` when the available balance is below
    the workspace's low-balance threshold, ``credits.depleted`` when the balance is 0, each
    once until a top-up resolves it (``credit_balance_alerts_resolve``). Above the threshold it
    costs nothing; below it, one shared-cache read once the alert fired. The alert fires after
    the debit commits (with the email, when the workspace has email alerts on)."""
    low = notification_settings_get(workspace_id=workspace_id).credits_low_balance
    if available >= low and balance > 0:
        return
    if available < low:
        threshold_levels_observe(
            workspace_id=workspace_id,
            subject="credits:low",
            period_start=NO_PERIOD,
            levels=[low],
            reached=lambda _level: True,
            event="credits.low",
            data=lambda level: {"available": available, "balance": balance, "threshold": level},
            resolve=False,
        )
    if balance <= 0:
        threshold_levels_observe(
            workspace_id=workspace_id,
            subject="credits:depleted",
            period_start=NO_PERIOD,
            levels=[0],
            reached=lambda _level: True,
            event="credits.depleted",
            data=lambda _level: {"balance": 0},
            resolve=False,
        )


def credit_balance_alerts_resolve(*, workspace_id: int, balance: int, available: int) -> list[str]:
    """After a grant or purchase, in its transaction: ``credits.low_resolved`` once the available
    balance is back at or above the threshold, ``credits.depleted_resolved`` once the balance is
    above 0; each re-arms its alert. Returns the events emitted."""
    low = notification_settings_get(workspace_id=workspace_id).credits_low_balance
    emitted = []
    if available >= low and threshold_resolved(
        workspace_id=workspace_id,
        subject="credits:low",
        period_start=NO_PERIOD,
        event="credits.low_resolved",
        data={"available": available, "balance": balance},
    ):
        emitted.append("credits.low_resolved")
    if balance > 0 and threshold_resolved(
        workspace_id=workspace_id,
        subject="credits:depleted",
        period_start=NO_PERIOD,
        event="credits.depleted_resolved",
        data={"available": available, "balance": balance},
    ):
        emitted.append("credits.depleted_resolved")
    return emitted


def credit_low_balance_email_send(*, workspace: Workspace) -> None:
    """Tell the workspace's billing contacts (active owners and billing members); nothing is
    sent when it has none. (The door of ``credits.tasks.credit_low_balance_email_task``; the
    balance alerts above email through ``notifications``.)"""
    recipients = workspace_billing_emails(workspace=workspace)
    if not recipients:
        logger.warning("low credit balance: no billing contact", extra={"workspace_id": workspace.pk})
        return
    balance = credit_balance_get(workspace=workspace)
    context = {"workspace": workspace, "balance": balance, "buy_url": f"{settings.SITE_URL}/credits/"}
    send_mail(
        subject=f"Tollgate credits are running low in {workspace.name}",
        message=render_to_string("credits/email/low_balance.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=recipients,
    )


@dataclass(frozen=True)
class Drift:
    workspace_id: int
    balance: int
    ledger_sum: int
    held: int
    open_holds: int


def credit_ledger_reconcile() -> list[Drift]:
    """Re-sum every ledger and compare with the cached balance and open holds; log drift."""
    ledger = dict(
        LedgerEntry.objects.values("workspace_id")
        .annotate(total=Sum("amount"))
        .values_list("workspace_id", "total")
    )
    holds = dict(
        CreditHold.objects.filter(status=CreditHold.Status.HELD)
        .values("workspace_id")
        .annotate(total=Sum("amount"))
        .values_list("workspace_id", "total")
    )
    drifts = []
    accounts = CreditAccount.objects.values_list("workspace_id", "balance", "held")
    seen = set()
    for workspace_id, balance, held in accounts:
        seen.add(workspace_id)
        total = ledger.get(workspace_id) or 0
        open_holds = holds.get(workspace_id) or 0
        if total != balance or open_holds != held:
            drifts.append(Drift(workspace_id, balance, total, held, open_holds))
    for workspace_id, total in ledger.items():
        if workspace_id not in seen and total:
            drifts.append(Drift(workspace_id, 0, total, 0, holds.get(workspace_id) or 0))
    for drift in drifts:
        logger.error(
            "credit ledger drift",
            extra={
                "workspace_id": drift.workspace_id,
                "balance": drift.balance,
                "ledger_sum": drift.ledger_sum,
                "held": drift.held,
                "open_holds": drift.open_holds,
            },
        )
    return drifts
