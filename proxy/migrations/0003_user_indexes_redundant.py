"""The user indexes of usage events and rollups repeat the start of ``usage_user_recent`` and
``rollup_user_provider_day``: dropped (concurrently on PostgreSQL), the foreign keys kept."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from core.migration_ops import index_drop_without_lock


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("proxy", "0002_rate_limited_day"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="usagedailyrollup",
                    name="user",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="usageevent",
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
                    table="proxy_usagedailyrollup", name="proxy_usagedailyrollup_user_id_e9eb657e", column="user_id"
                ),
                index_drop_without_lock(
                    table="proxy_usageevent", name="proxy_usageevent_user_id_5786ddc3", column="user_id"
                ),
            ],
        )
    ]
