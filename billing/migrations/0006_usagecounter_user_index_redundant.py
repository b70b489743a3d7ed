"""The counters' user index repeats the start of ``usagecounter_one_per_period``: dropped
(concurrently on PostgreSQL), the foreign key kept."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from core.migration_ops import index_drop_without_lock


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("billing", "0005_checkout_reference"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="usagecounter",
                    name="user",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            database_operations=[
                index_drop_without_lock(
                    table="billing_usagecounter", name="billing_usagecounter_user_id_9203a46f", column="user_id"
                ),
            ],
        )
    ]
