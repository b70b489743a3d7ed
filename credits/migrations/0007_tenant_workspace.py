"""The credits tenant becomes the workspace: ``user`` → ``workspace`` on the account, the ledger,
the holds, the purchases and the upsell events.

No row is rewritten: accounts 0004 gave every existing user a personal workspace whose id is the
user's id, so only the foreign keys change target. Between dropping the users' key and adding the
workspaces' one, an ``UPDATE`` moves the rows of users created after 0004 (whose personal
workspace has another id) onto that workspace.
"""

import django.db.models.deletion
from django.db import migrations, models


def _point_at_personal_workspace(table: str) -> migrations.RunSQL:
    """Rows of users created after 0004 move to their personal workspace. In two steps through
    negative values, so that a unique column (the account's) never holds one value twice."""
    return migrations.RunSQL(
        [
            f'UPDATE "{table}" t SET "user_id" = -w."id" FROM "accounts_workspace" w '  # noqa: S608 (constant table names)
            'WHERE w."personal_owner_id" = t."user_id" AND w."id" <> t."user_id"',
            f'UPDATE "{table}" SET "user_id" = -"user_id" WHERE "user_id" < 0',  # noqa: S608 (constant table names)
        ],
        migrations.RunSQL.noop,
    )


def _unchecked(field: models.Field) -> models.Field:
    """The same field with no database foreign key: while rows move, neither the users' key
    (deferred checks fire before the next ALTER) nor the workspaces' key stands in the way."""
    name, path, args, kwargs = field.deconstruct()
    return type(field)(*args, **{**kwargs, "db_constraint": False})


def _tenant_switch(*, model: str, table: str, field: models.Field) -> list:
    return [
        migrations.AlterField(model_name=model, name="user", field=_unchecked(field)),
        _point_at_personal_workspace(table),
        migrations.AlterField(model_name=model, name="user", field=field),
        migrations.RenameField(model_name=model, old_name="user", new_name="workspace"),
    ]


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_workspaces"),
        ("credits", "0006_seed_embeddings_endpoint_cost"),
    ]

    operations = [
        *_tenant_switch(
            model="creditaccount",
            table="credits_creditaccount",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="credit_account",
                to="accounts.workspace",
            ),
        ),
        *_tenant_switch(
            model="ledgerentry",
            table="credits_ledgerentry",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="credit_ledger",
                to="accounts.workspace",
            ),
        ),
        # The index follows its column; only its name and the migration state (which RenameField
        # leaves naming the old field) change.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="ledgerentry", name="ledger_user_newest"),
                migrations.AddIndex(
                    model_name="ledgerentry",
                    index=models.Index(fields=["workspace", "-id"], name="ledger_workspace_newest"),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'ALTER INDEX "ledger_user_newest" RENAME TO "ledger_workspace_newest"',
                    'ALTER INDEX "ledger_workspace_newest" RENAME TO "ledger_user_newest"',
                ),
            ],
        ),
        *_tenant_switch(
            model="credithold",
            table="credits_credithold",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="credit_holds",
                to="accounts.workspace",
            ),
        ),
        *_tenant_switch(
            model="creditpurchase",
            table="credits_creditpurchase",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="credit_purchases",
                to="accounts.workspace",
            ),
        ),
        *_tenant_switch(
            model="upsellevent",
            table="credits_upsellevent",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="upsell_events",
                to="accounts.workspace",
            ),
        ),
    ]
