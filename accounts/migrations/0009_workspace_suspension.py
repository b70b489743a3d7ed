from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0008_user_time_zone"),
    ]

    operations = [
        migrations.AddField(
            model_name="workspace",
            name="suspended_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="workspace",
            name="suspension_reason",
            field=models.CharField(blank=True, max_length=500),
        ),
    ]
