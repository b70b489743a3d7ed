"""Seed the credit packs and endpoint costs (idempotent; admin-editable afterwards)."""

from django.db import migrations

PACKS = [
    # code, name, credits, price_minor (EUR cents), best value, display order
    ("pack_100", "Pack 100", 100, 1900, False, 10),
    ("pack_500", "Pack 500", 500, 7900, True, 20),
    ("pack_1000", "Pack 1000", 1000, 13900, False, 30),
]

COSTS = [
    # endpoint, description, per call, per 1 000 units, unit
    ("/api/ai/generate", "AI generation", 5, 0, "none"),
    ("/api/ai/generate/hd", "AI generation, HD", 10, 0, "none"),
    ("/api/3d/render-highres", "3D high-resolution render", 8, 0, "none"),
    ("/api/ar/convert-2d-to-3d", "AR 2D to 3D conversion", 15, 0, "none"),
    ("/api/proxy/deepseek/chat", "DeepSeek chat, per 1 000 tokens", 0, 2, "tokens"),
    ("/api/proxy/instantly/send", "Instantly send, per email", 1, 0, "emails"),
    ("/api/proxy/v1/chat/completions", "Routed chat, per request", 1, 0, "requests"),
    ("/api/v2/chat", "Routed chat (alias), per request", 1, 0, "requests"),
]


def seed(apps, schema_editor):
    CreditPack = apps.get_model("credits", "CreditPack")
    EndpointCost = apps.get_model("credits", "EndpointCost")
    for code, name, credits, price_minor, best, order in PACKS:
        CreditPack.objects.get_or_create(
            code=code,
            defaults={
                "name": name,
                "credits": credits,
                "price_minor": price_minor,
                "currency": "eur",
                "is_best_value": best,
                "display_order": order,
            },
        )
    for endpoint, description, per_call, per_1000, unit in COSTS:
        EndpointCost.objects.get_or_create(
            endpoint=endpoint,
            defaults={"description": description, "per_call": per_call, "per_1000_units": per_1000, "unit": unit},
        )


class Migration(migrations.Migration):
    dependencies = [("credits", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
