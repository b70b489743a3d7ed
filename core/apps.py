from celery.schedules import crontab
from django.apps import AppConfig
from django.db.models.signals import post_migrate

from .beat import beat_schedule_add
from .cache_identity import identity_ensure_after_migrate, identity_warm
from .lifecycle import startup_hook_add


class CoreConfig(AppConfig):
    name = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        """Schedule the nightly reconciliation (after credits' own 03:20 check); keep the cache
        identity of a created or flushed database in step (``core.cache_identity``)."""
        beat_schedule_add(
            "core-reconciliation-run",
            task="core.reconciliation_run",
            schedule=crontab(minute=40, hour=3),
            expires=6 * 3600,
        )
        post_migrate.connect(identity_ensure_after_migrate, sender=self, dispatch_uid="core.cache_identity")
        startup_hook_add(identity_warm)
