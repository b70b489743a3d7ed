"""The ledger's user index repeats the start of ``ledger_user_newest``: dropped (concurrently on
PostgreSQL), the foreign key kept."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from core.migration_ops import index_drop_without_lock


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("credits", "0004_checkout_reference"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="ledgerentry",
                    name="user",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="credit_ledger",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            database_operations=[
                index_drop_without_lock(
                    table="credits_ledgerentry", name="credits_ledgerentry_user_id_b9a815a8", column="user_id"
                ),
            ],
        )
    ]
