from django.apps import AppConfig


class ProxyConfig(AppConfig):
    name = "proxy"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        """A stopping worker first finishes the calls whose clients already left."""
        from core.lifecycle import shutdown_hook_add

        from .gateway import background_drain

        shutdown_hook_add(background_drain)
