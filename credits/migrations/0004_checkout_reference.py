"""``CreditPurchase``'s checkout key, renamed as billing's (billing 0005): Stripe's Checkout
Session id or our Chargily reference."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("credits", "0003_creditpack_price_dzd_minor")]

    operations = [
        migrations.RenameField("creditpurchase", "stripe_checkout_session_id", "checkout_reference"),
    ]
