"""Re-encrypt every stored provider secret under the current SECRET_KEY + first SALT_KEY."""

from django.core.management.base import BaseCommand, CommandError

from accounts.services import provider_secrets_reencrypt


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored provider key (and pending key-reveal link) under the current key. "
        "Run after prepending a new SALT_KEY or moving the old SECRET_KEY to SECRET_KEY_FALLBACKS; "
        "then drop the old value."
    )

    def handle(self, *args, **options):
        report = provider_secrets_reencrypt()
        self.stdout.write(f"Re-encrypted {report.reencrypted} secret(s).")
        if report.failed:
            for item in report.failed:
                self.stderr.write(f"Could not decrypt and verify: {item}")
            raise CommandError(
                f"{len(report.failed)} secret(s) did not verify with the configured keys; "
                "they were left untouched. Restore the old key in SALT_KEY/SECRET_KEY_FALLBACKS and re-run."
            )
