from celery.schedules import crontab
from django.apps import AppConfig

from core.beat import beat_schedule_add


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks, crypto, schema, signals  # noqa: F401  (check E001; key reset; OpenAPI auth; cache)

        beat_schedule_add(
            "accounts-key-reveals-purge",
            task="accounts.key_reveals_purge",
            schedule=crontab(minute=17),
            expires=3600,
        )
