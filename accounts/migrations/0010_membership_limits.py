from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0009_workspace_suspension"),
    ]

    operations = [
        migrations.AddField(
            model_name="membership",
            name="limits",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
