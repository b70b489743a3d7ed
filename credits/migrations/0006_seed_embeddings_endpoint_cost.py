"""Price ``/api/proxy/v1/embeddings`` in credits (overage), like routed chat: 1 credit a request.

Idempotent and never overwrites an operator's edit (admin-editable afterwards); reversing
leaves the row, as 0002 does.
"""

from django.db import migrations

ENDPOINT = "/api/proxy/v1/embeddings"


def seed(apps, schema_editor):
    EndpointCost = apps.get_model("credits", "EndpointCost")
    EndpointCost.objects.get_or_create(
        endpoint=ENDPOINT,
        defaults={
            "description": "Embeddings, per request",
            "per_call": 1,
            "per_1000_units": 0,
            "unit": "requests",
        },
    )


class Migration(migrations.Migration):
    dependencies = [("credits", "0005_ledgerentry_user_index_redundant")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
