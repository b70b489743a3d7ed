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


@shared_task(name="dashboards.ledger_drift_check")
def ledger_drift_check_task() -> int:
    """Hourly full re-sum of the credit ledgers; the result feeds the dashboard's alerts."""
    return services.ledger_drift_record()["count"]
