from django.core.management.base import BaseCommand

from billing.services import plan_catalog_seed


class Command(BaseCommand):
    help = "Install the default plan catalogue (idempotent; never overwrites admin edits)."

    def handle(self, *args, **options):
        created = plan_catalog_seed()
        names = ", ".join(plan.code for plan in created) or "none (catalogue already present)"
        self.stdout.write(self.style.SUCCESS(f"Plans created: {names}"))
