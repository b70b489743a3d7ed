from celery.schedules import crontab
from django.apps import AppConfig

from billing.registry import event_handler_register
from core.beat import beat_schedule_add
from core.reconciliation import reconciliation_check_register

SUBSCRIPTION_EVENTS = (
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
)


class OrganizationsConfig(AppConfig):
    name = "organizations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from .reconciliation import usage_report_drift_find  # noqa: PLC0415 (models load once the app registry is ready)
        from .services import organization_subscription_event_handle  # noqa: PLC0415 (models load once the app registry is ready)

        for event_type in SUBSCRIPTION_EVENTS:
            event_handler_register(event_type, organization_subscription_event_handle)
        reconciliation_check_register("organizations.meter", usage_report_drift_find)
        # Retries unsent meter events; a run older than its interval is stale and dropped.
        beat_schedule_add(
            "organizations-meter-events-retry",
            task="organizations.usage_reports_retry_due",
            schedule=crontab(minute="*/10"),
            expires=9 * 60,
        )
