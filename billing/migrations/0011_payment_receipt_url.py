from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0010_plan_credit_price_and_money_key_limits"),
    ]

    operations = [
        migrations.AddField(
            model_name="paymenttransaction",
            name="receipt_url",
            field=models.URLField(blank=True, max_length=500),
        ),
    ]
