from django.apps import AppConfig

from core.beat import beat_schedule_add


class DashboardsConfig(AppConfig):
    """Read-only pages that compose the other apps' selectors (end-user and operator
    dashboards, API guide, metrics). Like ``core`` it holds no domain models; unlike every
    other app it may import all of them, and nothing imports it."""

    name = "dashboards"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        beat_schedule_add(
            "dashboards-operator-alerts",
            task="dashboards.operator_alerts_check",
            schedule=30.0,
            expires=25,
        )
