"""The credits charged per daily rollup row (``UsageDailyRollup.charge_credits``), filled from the
existing usage log.

The operator dashboard splits the period's revenue between providers by it. The backfill is one
``UPDATE … FROM (SELECT … GROUP BY)`` over ``proxy_usageevent`` in this migration's transaction,
keyed as the settle keys rollup rows (an event without a provider is rolled up under "none", its
day is its UTC date); rows without charged events keep 0, and no row is created. From the next
deploy on, every settle adds to the column in the statement that writes its event. Events written
by the previous release between this backfill and the switch to the new code are not in it
(deploy with the workers stopped, or re-run the backfill for that window).
"""

from django.db import migrations, models

# Same row key as proxy.call.settle / proxy.services (a migration keeps its own copy of the SQL).
BACKFILL_SQL = """
    UPDATE proxy_usagedailyrollup AS r
    SET charge_credits = e.charge_credits
    FROM (
        SELECT workspace_id, COALESCE(NULLIF(provider, ''), 'none') AS provider,
               (created_at AT TIME ZONE 'UTC')::date AS day, sum(charge_credits) AS charge_credits
        FROM proxy_usageevent
        GROUP BY 1, 2, 3
        HAVING sum(charge_credits) > 0
    ) AS e
    WHERE r.workspace_id = e.workspace_id AND r.provider = e.provider AND r.day = e.day
"""


class Migration(migrations.Migration):
    dependencies = [
        ("proxy", "0007_usage_spend_hourly"),
    ]

    operations = [
        migrations.AddField(
            model_name="usagedailyrollup",
            name="charge_credits",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.RunSQL(BACKFILL_SQL, reverse_sql=migrations.RunSQL.noop, elidable=True),
    ]
