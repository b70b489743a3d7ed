from django.apps import AppConfig


class ProxyConfig(AppConfig):
    name = "proxy"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        """A starting worker loads the catalogue; a stopping one first finishes the calls whose
        clients already left, then releases its spare quota reservations."""
        from billing.quota_pool import quota_pool_drain
        from core.lifecycle import shutdown_hook_add, startup_hook_add

        from .gateway import background_drain
        from .selectors import catalog_warm

        startup_hook_add(catalog_warm)
        shutdown_hook_add(background_drain)
        shutdown_hook_add(quota_pool_drain)
