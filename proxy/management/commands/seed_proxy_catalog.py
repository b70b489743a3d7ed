from django.core.management.base import BaseCommand

from proxy.catalog import proxy_catalog_seed


class Command(BaseCommand):
    help = "Install the default model prices and routes (idempotent; never overwrites admin edits)."

    def handle(self, *args, **options):
        prices, routes = proxy_catalog_seed()
        self.stdout.write(f"proxy catalogue: {prices} prices and {routes} routes added")
