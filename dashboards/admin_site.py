"""Tollgate's admin site: Django's, plus the operator dashboard at ``/admin/dashboard/``.

The dashboard is one of the site's own URLs, so it has the admin's login, staff check and look,
and the admin's catch-all cannot answer 404 before it. ``dashboards.admin_config`` makes this
class ``django.contrib.admin.site``, so every ``@admin.register`` lands here.
"""

from django.contrib import admin
from django.urls import path

from .views import operator_dashboard


class TollgateAdminSite(admin.AdminSite):
    def get_urls(self):
        return [
            path("dashboard/", self.admin_view(operator_dashboard), name="dashboard"),
            *super().get_urls(),
        ]
