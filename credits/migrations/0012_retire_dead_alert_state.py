from django.db import migrations


class Migration(migrations.Migration):
    """``CreditAccount.low_balance_alerted_at`` leaves the model; the column stays for now.

    Nothing has read or written it since low-balance alerts moved to notifications' thresholds.
    The previous release still selects it with every account row, so dropping the column while
    its workers drain would fail their credit reads: the column (nullable, so inserts without it
    work) is dropped by a later release's migration, once no running code knows the field.
    """

    dependencies = [
        ("credits", "0011_auto_top_up"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.RemoveField(model_name="creditaccount", name="low_balance_alerted_at")],
            database_operations=[],
        ),
    ]
