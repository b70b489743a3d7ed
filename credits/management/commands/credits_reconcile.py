from django.core.management.base import BaseCommand

from credits.services import credit_ledger_reconcile


class Command(BaseCommand):
    help = (
        "Re-sum every credit ledger and report accounts whose cached balance, holds or credit lots drifted."
    )

    def handle(self, *args, **options):
        drifts = credit_ledger_reconcile()
        for drift in drifts:
            self.stdout.write(
                f"workspace={drift.workspace_id} balance={drift.balance} ledger_sum={drift.ledger_sum} "
                f"held={drift.held} open_holds={drift.open_holds} lots_sum={drift.lots_sum}"
            )
        if drifts:
            self.stderr.write(self.style.ERROR(f"{len(drifts)} account(s) drifted."))
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS("Credit ledgers reconcile: no drift."))
