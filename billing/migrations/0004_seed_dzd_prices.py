"""Give catalogue plans their default DZD price (Chargily) where the operator has set none."""

from django.db import migrations

from billing.catalog import DEFAULT_CATALOG


def seed(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for spec in DEFAULT_CATALOG:
        if spec.get("price_dzd_minor"):
            Plan.objects.filter(code=spec["code"], price_dzd_minor__isnull=True).update(
                price_dzd_minor=spec["price_dzd_minor"]
            )


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_chargily")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
