"""Index usage events by request id, so the operator finds a call from a customer's
``X-Request-ID`` without scanning the log (the admin's exact search). Built ``CONCURRENTLY``:
calls keep settling into the table meanwhile."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("proxy", "0003_user_indexes_redundant"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="usageevent",
            index=models.Index(fields=["request_id"], name="usage_request_id"),
        ),
    ]
