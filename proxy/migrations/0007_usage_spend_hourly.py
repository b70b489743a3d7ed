"""The hourly spend rollup (``UsageSpendHourly``), filled from the existing usage log.

The backfill is one ``INSERT … SELECT … GROUP BY`` over ``proxy_usageevent`` in this migration's
transaction; from the next deploy on, every settle adds to the rollup in the statement that
writes its event. Events written by the previous release between this backfill and the switch
to the new code are not in the rollup (deploy with the workers stopped, or re-run the backfill
for that window).
"""

import django.db.models.deletion
from django.db import migrations, models

# Same row key as proxy.services.spend_hourly_key (a migration keeps its own copy of the SQL).
BACKFILL_SQL = """
    INSERT INTO proxy_usagespendhourly (
        workspace_id, hour, api_key_id, model, charge_currency, requests, errors,
        prompt_tokens, completion_tokens, charge_credits, charge_micros
    )
    SELECT workspace_id, date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           COALESCE(api_key_id, 0), COALESCE(NULLIF(model, ''), endpoint), charge_currency,
           count(*), count(*) FILTER (WHERE status_code >= 400), sum(prompt_tokens),
           sum(completion_tokens), sum(charge_credits), sum(charge_micros)
    FROM proxy_usageevent
    GROUP BY 1, 2, 3, 4, 5
"""


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0008_user_time_zone"),
        ("proxy", "0006_usage_event_charge"),
    ]

    operations = [
        migrations.CreateModel(
            name="UsageSpendHourly",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("hour", models.DateTimeField()),
                ("api_key_id", models.PositiveBigIntegerField()),
                ("model", models.CharField(max_length=128)),
                ("charge_currency", models.CharField(blank=True, max_length=3)),
                ("requests", models.PositiveIntegerField(default=0)),
                ("errors", models.PositiveIntegerField(default=0)),
                ("prompt_tokens", models.BigIntegerField(default=0)),
                ("completion_tokens", models.BigIntegerField(default=0)),
                ("charge_credits", models.BigIntegerField(default=0)),
                ("charge_micros", models.BigIntegerField(default=0)),
                (
                    "workspace",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.workspace",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("workspace", "hour", "api_key_id", "model", "charge_currency"),
                        name="spend_hourly_row",
                    )
                ],
            },
        ),
        migrations.RunSQL(BACKFILL_SQL, reverse_sql=migrations.RunSQL.noop, elidable=True),
    ]
