"""The checkout key holds Stripe's Checkout Session id or, for Chargily, our own reference: it is
named for both (a column rename, no data change)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_seed_dzd_prices")]

    operations = [
        migrations.RenameField("subscription", "stripe_checkout_session_id", "checkout_reference"),
        migrations.RenameField("checkoutsession", "stripe_checkout_session_id", "checkout_reference"),
        migrations.RenameField("checkoutfulfilment", "stripe_checkout_session_id", "checkout_reference"),
    ]
