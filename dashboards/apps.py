from django.apps import AppConfig

from core.beat import beat_schedule_add


class DashboardsConfig(AppConfig):
    """Read-only pages that compose the other apps' selectors (end-user and operator
    dashboards, API guide, metrics). Like ``core`` it holds no domain models; unlike every
    other app it may import all of them, and nothing imports it."""

    name = "dashboards"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        self._admin_dashboard_url_add()

        beat_schedule_add(
            "dashboards-operator-alerts",
            task="dashboards.operator_alerts_check",
            schedule=30.0,
            expires=25,
        )

    @staticmethod
    def _admin_dashboard_url_add() -> None:
        """Serve ``/admin/dashboard/`` from the admin site itself (its login, its staff check,
        its look); the admin's catch-all would otherwise answer 404 before our URLconf."""
        from django.contrib import admin
        from django.urls import path

        site = admin.site
        if getattr(site, "_tollgate_dashboard", False):
            return
        original = site.get_urls

        def get_urls():
            from .views import operator_dashboard

            return [
                path("dashboard/", site.admin_view(operator_dashboard), name="dashboard"),
                *original(),
            ]

        site.get_urls = get_urls
        site._tollgate_dashboard = True
