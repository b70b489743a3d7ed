"""Periodic operator checks. Thin and safe to run twice: each service is gated."""

from celery import shared_task

from . import services


@shared_task(name="dashboards.operator_alerts_check")
def operator_alerts_check_task() -> dict:
    """Budget ≥ 90 % (one email a day) and providers entering cooldown (one email each time).

    Runs every 30 s so a cooldown (60 s by default) is never missed between two checks.
    """
    return {
        "budget_alerted": services.budget_alert_send(),
        "cooldown_alerted": services.cooldown_alert_send(),
    }
