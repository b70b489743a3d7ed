"""Every balance that predates lots becomes one paid lot that never expires, so that
``balance == sum(lot.remaining)`` holds from the first burn on. Credits granted before lots are
counted as paid here: nothing said they would expire, and paid is what is spent last."""

from django.db import migrations


def _open_lots(apps, schema_editor):
    accounts = apps.get_model("credits", "CreditAccount")
    lots = apps.get_model("credits", "CreditLot")
    already = set(lots.objects.values_list("workspace_id", flat=True).distinct())
    lots.objects.bulk_create(
        [
            lots(
                workspace_id=workspace_id,
                kind="paid",
                amount=balance,
                remaining=balance,
                expires_at=None,
                reason="balance before credit lots",
            )
            for workspace_id, balance in accounts.objects.filter(balance__gt=0)
            .order_by("pk")
            .values_list("workspace_id", "balance")
            .iterator(chunk_size=2000)
            if workspace_id not in already
        ],
        batch_size=2000,
    )


def _close_lots(apps, schema_editor):
    apps.get_model("credits", "CreditLot").objects.filter(
        source_entry__isnull=True, reason="balance before credit lots"
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("credits", "0008_credit_lots")]

    operations = [migrations.RunPython(_open_lots, _close_lots)]
