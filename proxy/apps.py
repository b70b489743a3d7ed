from celery.schedules import crontab
from django.apps import AppConfig

from core.beat import beat_schedule_add
from core.lifecycle import shutdown_hook_add, startup_hook_add
from core.reconciliation import reconciliation_check_register


class ProxyConfig(AppConfig):
    name = "proxy"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        """A starting worker loads the catalogue; a stopping one first finishes the calls whose
        clients already left, then releases its spare quota reservations. Beat sweeps the
        daily-budget holds of calls that died."""
        from accounts.key_checks import provider_key_checker_register  # noqa: PLC0415 (models load once the app registry is ready)
        from billing.quota_pool import quota_pool_drain  # noqa: PLC0415 (models load once the app registry is ready)

        from .call.detached import background_drain  # noqa: PLC0415 (models load once the app registry is ready)
        from .provider_check import provider_key_check  # noqa: PLC0415 (models load once the app registry is ready)
        from .reconciliation import budget_overshoot_drift_find  # noqa: PLC0415 (models load once the app registry is ready)
        from .selectors import catalog_warm  # noqa: PLC0415 (models load once the app registry is ready)

        startup_hook_add(catalog_warm)
        shutdown_hook_add(background_drain)
        shutdown_hook_add(quota_pool_drain)
        reconciliation_check_register("proxy.budget", budget_overshoot_drift_find)
        provider_key_checker_register(provider_key_check)  # saving a global key asks the provider first
        # A crashed worker's daily-budget holds must not shrink the operator's budget all day.
        beat_schedule_add(
            "budget-holds-sweep",
            task="proxy.tasks.budget_holds_sweep",
            schedule=crontab(minute="*/5"),
            expires=4 * 60,
        )
