"""Writes of the dashboards app: the operator alert emails (and the cache gates that send each
one once). It writes nothing of the other apps; what it reports comes from their selectors."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.utils import timezone

from .selectors.operator import (
    budget_status_get,
    providers_in_cooldown_list,
    staff_recipients_list,
)

logger = logging.getLogger("tollgate.dashboards")

ALERT_GATE_SECONDS = 2 * 24 * 3600


def _budget_gate_key(day) -> str:
    return f"dashboards:alert:budget:{day.isoformat()}"


def _cooldown_gate_key(provider: str) -> str:
    return f"dashboards:alert:cooldown:{provider}"


def _staff_email_send(*, subject: str, body: str) -> int:
    recipients = staff_recipients_list()
    if not recipients:
        logger.warning("operator alert not emailed: no active staff user has an email address")
        return 0
    return send_mail(
        subject=subject,
        message=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=recipients,
    )


def budget_alert_send(*, now: datetime | None = None) -> bool:
    """Email staff once per UTC day when today's spend reaches 90 % of the daily budget.

    The gate is an atomic ``cache.add`` keyed by the day, taken before sending (two workers
    cannot both send) and given back if the email fails, so the next run retries.
    """
    now = now or timezone.now()
    today = now.date()
    budget = budget_status_get(today=today)
    if budget.alert_level != "critical":
        return False
    gate = _budget_gate_key(today)
    if not cache.add(gate, now.isoformat(), ALERT_GATE_SECONDS):
        return False
    try:
        _staff_email_send(
            subject=f"[Tollgate] Daily budget at {budget.percent_used}%",
            body=(
                f"Operator spend today ({today.isoformat()} UTC) is {budget.spent_usd} USD of "
                f"{budget.limit_usd} USD ({budget.percent_used}%).\n\n"
                "When the budget is exhausted, paid providers are skipped for the plans' free "
                "fallbacks.\nAction: raise DAILY_BUDGET_USD, or wait for the reset at 00:00 UTC.\n"
                f"Dashboard: {settings.SITE_URL}/admin/dashboard/\n"
            ),
        )
    except Exception:
        cache.delete(gate)
        raise
    logger.warning("budget alert emailed", extra={"percent": str(budget.percent_used)})
    return True


def cooldown_alert_send(*, now: datetime | None = None) -> list[str]:
    """Email staff about each provider that entered cooldown since the last check.

    One email per cooldown episode: the gate lives as long as the cooldown itself.
    """
    alerted = []
    for provider in providers_in_cooldown_list():
        gate = _cooldown_gate_key(provider)
        if not cache.add(gate, 1, max(settings.PROXY_COOLDOWN_SECONDS, 1)):
            continue
        try:
            _staff_email_send(
                subject=f"[Tollgate] {provider} is in cooldown",
                body=(
                    f"{provider} failed {settings.PROXY_COOLDOWN_FAILURES} times in a row and is skipped "
                    f"for {settings.PROXY_COOLDOWN_SECONDS} s; calls go to the fallback providers.\n"
                    f"Dashboard: {settings.SITE_URL}/admin/dashboard/\n"
                ),
            )
        except Exception:
            cache.delete(gate)
            raise
        alerted.append(provider)
    if alerted:
        logger.warning("cooldown alert emailed", extra={"providers": alerted})
    return alerted
