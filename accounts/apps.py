from celery.schedules import crontab
from django.apps import AppConfig

from core.beat import beat_schedule_add


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Imported for what they register: check E001, the key reset, OpenAPI auth, the cache hooks.
        from . import checks, crypto, schema, signals  # noqa: F401, PLC0415 (they need the app registry ready)

        beat_schedule_add(
            "accounts-key-reveals-purge",
            task="accounts.key_reveals_purge",
            schedule=crontab(minute=17),
            expires=3600,
        )
