"""The billing tenant becomes the workspace: every tenant column ``user`` becomes ``workspace``.

No row is rewritten for users who existed at ``accounts.0004_workspaces``: their personal
workspace has their id. Rows of users created since point at that user's personal workspace.

Per table: the foreign key to the user is swapped for an unchecked one to the workspace, the
late users' rows are moved, then the checked foreign key is added and the column renamed. The
UPDATE runs without a foreign key on its column: under the old (deferred) key a moved row
would queue a check that makes the next ALTER TABLE of that table fail ("pending trigger
events"), and its new value need not be a user id. Indexes keep their columns (PostgreSQL
follows the rename), so only the migration state learns their new field name; the ones whose
name said "user" are renamed in place (no index is rebuilt).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def _move(table: str, model_name: str, *, on_delete, related_name: str, **extra):
    """The recipe's three steps for one table, with the unchecked key in front of the UPDATE."""

    def field(**more):
        return models.ForeignKey(
            on_delete=on_delete, related_name=related_name, to="accounts.workspace", **extra, **more
        )

    return [
        migrations.AlterField(model_name=model_name, name="user", field=field(db_constraint=False)),
        migrations.RunSQL(  # rows of users created after 0004 point at their personal workspace
            f'UPDATE "{table}" t SET "user_id" = w."id" FROM "accounts_workspace" w '
            'WHERE w."personal_owner_id" = t."user_id" AND w."id" <> t."user_id"',  # noqa: S608 (table names are this file's constants)
            migrations.RunSQL.noop,
        ),
        migrations.AlterField(model_name=model_name, name="user", field=field()),
        migrations.RenameField(model_name=model_name, old_name="user", new_name="workspace"),
    ]


def _index_rename(old: str, new: str):
    """PostgreSQL renames the index in place (its column already followed the rename)."""
    return migrations.RunSQL(
        f'ALTER INDEX "{old}" RENAME TO "{new}"', f'ALTER INDEX "{new}" RENAME TO "{old}"'
    )


def _constraint_restate(model_name: str, constraint, *, old_name: str | None = None):
    """The constraint as the model states it now, naming ``workspace``; in the database it is
    the same unique index (renamed when its name said "user")."""
    return migrations.SeparateDatabaseAndState(
        database_operations=[_index_rename(old_name, constraint.name)] if old_name else [],
        state_operations=[
            migrations.RemoveConstraint(model_name=model_name, name=old_name or constraint.name),
            migrations.AddConstraint(model_name=model_name, constraint=constraint),
        ],
    )


def _index_restate(model_name: str, index, *, old_name: str):
    return migrations.SeparateDatabaseAndState(
        database_operations=[_index_rename(old_name, index.name)],
        state_operations=[
            migrations.RemoveIndex(model_name=model_name, name=old_name),
            migrations.AddIndex(model_name=model_name, index=index),
        ],
    )


CASCADE = django.db.models.deletion.CASCADE
PROTECT = django.db.models.deletion.PROTECT


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_workspaces"),
        ("billing", "0007_subscription_one_live"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        *_move("billing_usagecounter", "usagecounter", on_delete=CASCADE, related_name="+", db_index=False),
        *_move("billing_quotareservation", "quotareservation", on_delete=CASCADE, related_name="+"),
        *_move("billing_periodaudit", "periodaudit", on_delete=CASCADE, related_name="+"),
        *_move("billing_quotaalertsent", "quotaalertsent", on_delete=CASCADE, related_name="+"),
        *_move("billing_subscription", "subscription", on_delete=PROTECT, related_name="subscriptions"),
        *_move(
            "billing_checkoutsession", "checkoutsession", on_delete=CASCADE, related_name="checkout_sessions"
        ),
        *_move(
            "billing_paymenttransaction",
            "paymenttransaction",
            on_delete=PROTECT,
            related_name="payment_transactions",
        ),
        _constraint_restate(
            "usagecounter",
            models.UniqueConstraint(
                fields=("workspace", "meter", "period_start"), name="usagecounter_one_per_period"
            ),
        ),
        _constraint_restate(
            "quotaalertsent",
            models.UniqueConstraint(
                fields=("workspace", "meter", "period_start", "threshold"), name="quotaalert_once"
            ),
        ),
        _constraint_restate(
            "subscription",
            models.UniqueConstraint(
                condition=models.Q(("status__in", ["active", "trialing", "past_due"])),
                fields=("workspace",),
                name="subscription_one_live_per_workspace",
            ),
            old_name="subscription_one_live_per_user",
        ),
        _index_restate(
            "subscription",
            models.Index(fields=["workspace", "status"], name="subscription_workspace_status"),
            old_name="subscription_user_status",
        ),
        _index_restate(
            "paymenttransaction",
            models.Index(fields=["workspace", "-created_at"], name="paymenttx_workspace_created"),
            old_name="paymenttx_user_created",
        ),
        migrations.AlterModelOptions(
            name="periodaudit", options={"ordering": ["-period_start", "workspace_id", "meter"]}
        ),
        # Who opened a checkout: its first plan's key is made in their name.
        migrations.AddField(
            model_name="checkoutsession",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]
