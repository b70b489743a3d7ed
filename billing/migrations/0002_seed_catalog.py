"""Install the default plan catalogue (idempotent; existing rows are left as edited)."""

from django.db import migrations

from billing.catalog import DEFAULT_CATALOG, DEFAULT_CURRENCY, DEFAULT_MAX_TOKENS, DEFAULT_MAX_TOKENS_CAP, METER_PERIODS


def seed(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    PlanQuota = apps.get_model("billing", "PlanQuota")
    for spec in DEFAULT_CATALOG:
        plan, _ = Plan.objects.get_or_create(
            code=spec["code"],
            defaults={
                "name": spec["name"],
                "price_minor": spec["price_minor"],
                "currency": DEFAULT_CURRENCY,
                "rate_limit_per_minute": spec["rate_limit_per_minute"],
                "routing_weights": spec["routing_weights"],
                "default_max_tokens": DEFAULT_MAX_TOKENS,
                "max_tokens_cap": DEFAULT_MAX_TOKENS_CAP,
                "sort_order": spec["sort_order"],
            },
        )
        for meter, limit in spec["quotas"].items():
            PlanQuota.objects.get_or_create(
                plan=plan, meter=meter, defaults={"period": METER_PERIODS[meter], "limit": limit}
            )


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
