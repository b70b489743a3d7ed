"""``manage.py bench_setup``: create the bench tenant and print it as JSON (used by ``make bench``).

Refuses to run unless ``TOLLGATE_BENCH=1``: it creates a private plan with effectively unlimited
quotas and operator keys with a fake secret, which must never happen on a real deployment.
"""

import json
import os

from django.core.management.base import BaseCommand, CommandError

from bench.setup import bench_tenant_create


class Command(BaseCommand):
    help = "Create a bench user on a private unlimited plan, its proxy key and fake operator keys."

    def add_arguments(self, parser):
        parser.add_argument("--email", default=None)

    def handle(self, *args, email=None, **options):
        if os.environ.get("TOLLGATE_BENCH") != "1":
            raise CommandError("bench_setup only runs with TOLLGATE_BENCH=1 (it creates an unlimited plan).")

        tenant = bench_tenant_create(email=email)
        self.stdout.write(json.dumps(tenant.as_dict()))
