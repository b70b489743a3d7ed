"""``manage.py generate_usage_events --count 1000000``: realistic usage history for benchmarks
and demos (events + the rollups and daily spend they imply)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from proxy.usage_generator import usage_events_generate


class Command(BaseCommand):
    help = "Bulk-generate usage events and their daily rollups and spend (drawn by PostgreSQL)."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=100_000, help="number of usage events")
        parser.add_argument(
            "--users", type=int, default=200, help="new users to spread them over (their personal workspaces)"
        )
        parser.add_argument("--days", type=int, default=30, help="history length in days, ending now")
        parser.add_argument(
            "--heavy-user", default="", help="email of an existing user whose personal workspace gets a share"
        )
        parser.add_argument("--heavy-share", type=float, default=0.05, help="that workspace's share (0..1)")
        parser.add_argument("--seed", type=int, default=None, help="fixed seed = reproducible data")

    def handle(self, *args, **options):
        if options["count"] < 0 or options["users"] < 1 or options["days"] < 1:
            raise CommandError("--count must be >= 0; --users and --days >= 1.")
        if not 0 <= options["heavy_share"] <= 1:
            raise CommandError("--heavy-share must be between 0 and 1.")
        heavy = None
        if options["heavy_user"]:
            heavy = get_user_model().objects.filter(email=options["heavy_user"].lower()).first()
            if heavy is None:
                raise CommandError(f"No user with email {options['heavy_user']!r}.")
        result = usage_events_generate(
            count=options["count"],
            users=options["users"],
            days=options["days"],
            heavy_workspace=heavy.personal_workspace if heavy is not None else None,
            heavy_share=options["heavy_share"],
            seed=options["seed"],
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"{result.events:,} usage events, {result.rollups:,} rollup rows for {result.workspaces} "
                f"workspaces in {result.seconds:.1f} s (heavy workspace id {result.heavy_workspace_id})."
            )
        )
