from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        """Schedule the nightly reconciliation (after credits' own 03:20 check)."""
        from config.celery import beat_schedule_add, crontab

        beat_schedule_add(
            "core-reconciliation-run",
            task="core.reconciliation_run",
            schedule=crontab(minute=40, hour=3),
            expires=6 * 3600,
        )
