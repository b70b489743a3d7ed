import uuid

from django.db import migrations, models
from django.utils import timezone


def identity_create(apps, schema_editor):
    """The database's identity is born with it (``core.cache_identity``)."""
    DeploymentIdentity = apps.get_model("core", "DeploymentIdentity")
    DeploymentIdentity.objects.using(schema_editor.connection.alias).get_or_create(
        pk=1, defaults={"instance_id": uuid.uuid4(), "created_at": timezone.now()}
    )


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="DeploymentIdentity",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("instance_id", models.UUIDField()),
                ("created_at", models.DateTimeField()),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("pk", 1)), name="deploymentidentity_single_row"
                    )
                ],
            },
        ),
        migrations.RunPython(identity_create, migrations.RunPython.noop),
    ]
