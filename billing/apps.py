from celery.schedules import crontab
from django.apps import AppConfig

from core.beat import beat_schedule_add
from core.reconciliation import reconciliation_check_register

from . import registry


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        """Register billing's own checkout kind, its guard on workspace deletion and its periodic
        tasks (code, not admin rows)."""
        from accounts.registry import workspace_delete_guard_register, workspace_summary_register  # noqa: PLC0415 (models load once the app registry is ready)
        from accounts.selectors import (  # noqa: PLC0415 (models load once the app registry is ready)
            api_key_limits_usage_reader_register,
            member_limits_usage_reader_register,
        )

        from .reconciliation import quota_counter_drift_find  # noqa: PLC0415 (models load once the app registry is ready)
        from .selectors import workspace_delete_refusal_get  # noqa: PLC0415 (models load once the app registry is ready)
        from .services import (  # noqa: PLC0415 (models load once the app registry is ready)
            PLAN_CHECKOUT_KIND,
            key_limits_usage_get,
            member_limits_usage_get,
            subscription_activate,
        )
        from .workspace_hooks import workspace_plan_summary  # noqa: PLC0415 (models load once the app registry is ready)

        api_key_limits_usage_reader_register(key_limits_usage_get)  # the key list's ``used``
        member_limits_usage_reader_register(member_limits_usage_get)  # the members page's
        registry.checkout_handler_register(PLAN_CHECKOUT_KIND, subscription_activate)
        # A workspace with a paid plan in force is not deleted: it would keep being billed.
        workspace_delete_guard_register(workspace_delete_refusal_get)
        workspace_summary_register(workspace_plan_summary)  # the admin's workspace page
        reconciliation_check_register("billing.quota", quota_counter_drift_find)
        beat_schedule_add(
            "quota-period-rollover",
            task="billing.tasks.quota_period_rollover",
            schedule=crontab(minute=5, hour=0, day_of_month=1),
            expires=6 * 3600,
        )
        # A crashed caller's hold must not block a quota until the next month.
        beat_schedule_add(
            "quota-reservations-release-stale",
            task="billing.tasks.quota_reservations_release_stale",
            schedule=crontab(minute="*/5"),  # holds of a dead worker are freed soon after they go stale
            expires=4 * 60,
        )
        # A subscription replaced by a newer paid checkout must stop billing at Stripe.
        beat_schedule_add(
            "subscriptions-replaced-cancel-pending",
            task="billing.tasks.subscriptions_replaced_cancel_pending",
            schedule=crontab(minute="*/15"),
            expires=14 * 60,
        )
        # Chargily plans are one paid period: end them, and remind a few days before.
        beat_schedule_add(
            "chargily-periods-expire",
            task="billing.tasks.chargily_periods_expire",
            schedule=crontab(minute=7),
            expires=3000,
        )
        beat_schedule_add(
            "chargily-renewal-reminders",
            task="billing.tasks.chargily_renewal_reminders",
            schedule=crontab(minute=37),
            expires=3000,
        )
