"""Give the database a new cache identity: run it after restoring a backup or copying the
database to another deployment, before starting the processes (docs/hardening.md)."""

from django.core.management.base import BaseCommand

from core.cache_identity import cache_identity_rotate


class Command(BaseCommand):
    help = (
        "Replace this database's cache identity, so no entry cached from another copy of it (or "
        "from before a restore) is read again. Restart the web, worker and beat processes after."
    )

    def handle(self, *args, **options):
        new_id = cache_identity_rotate()
        self.stdout.write(f"cache identity rotated: {new_id}; restart every process to use it")
