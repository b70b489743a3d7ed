"""The admin app with Tollgate's site as the default one (Django's "Overriding the default admin
site"). Listed in ``INSTALLED_APPS`` in place of ``django.contrib.admin``; it is a module of its
own because ``INSTALLED_APPS`` loads it before models exist, and the site imports the views."""

from django.contrib.admin.apps import AdminConfig


class TollgateAdminConfig(AdminConfig):
    default_site = "dashboards.admin_site.TollgateAdminSite"
