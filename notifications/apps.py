from django.apps import AppConfig

from core.beat import beat_schedule_add


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        beat_schedule_add(
            "notifications-deliveries-sweep",
            task="notifications.deliveries_sweep",
            schedule=60.0,  # a failed delivery's retry is due at its next_attempt_at: found within a minute
            expires=55,
        )
