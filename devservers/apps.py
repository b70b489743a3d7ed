from django.apps import AppConfig


class DevserversConfig(AppConfig):
    """Listed first in INSTALLED_APPS so its ``runserver`` replaces Django's (and staticfiles')."""

    name = "devservers"
    verbose_name = "Development servers"
