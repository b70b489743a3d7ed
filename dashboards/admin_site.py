"""Tollgate's admin site: Django's, branded, with its models grouped by task, plus the operator
dashboard at ``/admin/dashboard/`` and each workspace's customer page at ``/admin/customers/<id>/``
(``dashboards.workspace_admin``).

These pages are the site's own URLs, so they have the admin's login, staff check and look,
and the admin's catch-all cannot answer 404 before them. ``dashboards.admin_config`` makes this
class ``django.contrib.admin.site``, so every ``@admin.register`` lands here.
"""

from django.contrib import admin
from django.urls import path, reverse

from .views import operator_dashboard
from .workspace_admin import workspace_360, workspace_360_action

# The index and the sidebar list models by the operator's task, not by the app that defines them.
# Each entry is (group name, anchor, model labels in display order). A registered model missing
# here still shows, under "Other", so nothing disappears when an app registers a new one.
ADMIN_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Customers",
        "customers",
        (
            "accounts.Workspace",
            "accounts.User",
            "accounts.Membership",
            "accounts.Invitation",
            "accounts.AuditEvent",
            "accounts.ApiKey",
            "accounts.ProviderCredential",
            "credits.CreditAccount",
            "auth.Group",
            "authtoken.TokenProxy",
        ),
    ),
    (
        "Billing",
        "billing",
        (
            "billing.Plan",
            "billing.Subscription",
            "billing.CheckoutSession",
            "billing.CheckoutFulfilment",
            "billing.PaymentTransaction",
            "billing.StripeEvent",
            "billing.ChargilyEvent",
            "credits.CreditPack",
            "credits.CreditPurchase",
            "credits.AutoTopUp",
            "credits.AutoTopUpAttempt",
            "credits.EndpointCost",
            "credits.LedgerEntry",
            "credits.CreditHold",
            "credits.UpsellEvent",
            "billing.UsageCounter",
            "billing.PeriodAudit",
        ),
    ),
    (
        "Proxy",
        "proxy",
        (
            "proxy.UsageEvent",
            "proxy.ModelPrice",
            "proxy.ModelRoute",
            "proxy.DailySpend",
            "proxy.UsageDailyRollup",
            "proxy.UsageSpendHourly",
        ),
    ),
    (
        "Operations",
        "operations",
        (
            "organizations.Organization",
            "organizations.UsageReport",
            "core.ReconciliationDrift",
            "django_celery_beat.PeriodicTask",
            "django_celery_beat.CrontabSchedule",
            "django_celery_beat.IntervalSchedule",
            "django_celery_beat.ClockedSchedule",
            "django_celery_beat.SolarSchedule",
        ),
    ),
    (
        "Webhooks",
        "webhooks",
        (
            "notifications.WebhookEndpoint",
            "notifications.WebhookEvent",
            "notifications.WebhookDelivery",
        ),
    ),
)


class TollgateAdminSite(admin.AdminSite):
    site_header = "Tollgate operator console"
    site_title = "Tollgate admin"
    index_title = "Run the business"

    def get_urls(self):
        return [
            path("dashboard/", self.admin_view(operator_dashboard), name="dashboard"),
            path("customers/<int:workspace_id>/", self.admin_view(workspace_360), name="workspace-360"),
            path(
                "customers/<int:workspace_id>/<slug:action>/",
                self.admin_view(workspace_360_action),
                name="workspace-360-action",
            ),
            *super().get_urls(),
        ]

    def get_app_list(self, request, app_label=None):
        """Models grouped by ``ADMIN_GROUPS`` on the index and in the sidebar; an app's own page
        (``/admin/<app_label>/``, which passes ``app_label``) keeps Django's per-app list."""
        if app_label is not None:
            return super().get_app_list(request, app_label)
        by_label = {}
        for app in self._build_app_dict(request).values():
            for model in app["models"]:
                by_label[model["model"]._meta.label] = model
        index_url = reverse("admin:index", current_app=self.name)
        groups = []
        for name, anchor, labels in ADMIN_GROUPS:
            models = [by_label.pop(label) for label in labels if label in by_label]
            if models:
                groups.append(_group(name=name, anchor=anchor, models=models, index_url=index_url))
        if by_label:
            others = sorted(by_label.values(), key=lambda model: model["name"])
            groups.append(_group(name="Other", anchor="other", models=others, index_url=index_url))
        return groups


def _group(*, name: str, anchor: str, models: list[dict], index_url: str) -> dict:
    """One entry of the app list in the shape Django's templates read (``app_list.html``)."""
    return {
        "name": name,
        "app_label": anchor,
        "app_url": f"{index_url}#{anchor}",
        "has_module_perms": True,
        "models": models,
    }
