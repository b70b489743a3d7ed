from celery.schedules import crontab
from django.apps import AppConfig

from accounts.registry import workspace_delete_guard_register, workspace_summary_register
from billing.registry import checkout_handler_register, event_handler_register
from core.beat import beat_schedule_add
from core.reconciliation import reconciliation_check_register


class CreditsConfig(AppConfig):
    name = "credits"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        """Register with billing and accounts (which never import credits) and add the periodic tasks."""
        from . import services  # noqa: PLC0415 (models load once the app registry is ready)
        from .reconciliation import credit_ledger_drift_find  # noqa: PLC0415 (models load once the app registry is ready)
        from .selectors import credit_balance_summary, credit_workspace_delete_guard  # noqa: PLC0415 (models load once the app registry is ready)

        checkout_handler_register(services.CHECKOUT_KIND, services.credit_purchase_fulfil)
        reconciliation_check_register("credits.ledger", credit_ledger_drift_find)
        event_handler_register("charge.refunded", services.credit_refund_apply)
        workspace_delete_guard_register(credit_workspace_delete_guard)  # "Credits remain (N)"
        workspace_summary_register(credit_balance_summary)  # the admin's workspace page
        beat_schedule_add(
            "credits-ledger-reconcile",
            task="credits.ledger_reconcile",
            schedule=crontab(minute=20, hour=3),
            expires=6 * 3600,
        )
        beat_schedule_add(
            "credits-holds-expire",
            task="credits.holds_expire",
            schedule=crontab(minute="*/5"),  # with STALE_RESERVATION_SECONDS: freed within minutes
            expires=4 * 60,
        )
        beat_schedule_add(  # lots past their expiry leave the balance within minutes
            "credits-lots-expire",
            task="credits.lots_expire",
            schedule=crontab(minute="*/5"),
            expires=4 * 60,
        )
