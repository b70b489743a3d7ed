"""The tenant of proxy keys, provider keys and refused-key counters becomes the workspace.

No row is rewritten for users that existed before 0004: their personal workspace has their id,
so ``user_id`` keeps its value as ``workspace_id``; only the foreign key changes. The rows of
users created after 0004 (whose personal workspace has another id) are pointed at it.

Per table, in this order:

1. drop the constraints and indexes that name ``user`` (a unique one would be checked row by
   row during the UPDATE below, and two users' rows may swap ids);
2. drop the foreign key to the user (``db_constraint=False``): PostgreSQL refuses to alter a
   table whose deferred foreign key still has checks pending from an UPDATE in the same
   transaction ("pending trigger events"), and the UPDATE would break that key anyway;
3. UPDATE the post-0004 users' rows to their personal workspace id;
4. any other data change of the table (the provider keys' scope), still without a foreign key:
   once one is back, an UPDATE leaves its checks pending until the commit, and PostgreSQL then
   refuses the index and constraint changes that follow;
5. point the column at the workspace (the new foreign key validates every row), rename it;
6. add the constraints and indexes back under their workspace names.

``ApiKey.created_by`` is filled from the old ``user_id`` first, before any row is moved.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def _to_personal_workspace(table: str) -> migrations.RunSQL:
    """Rows of users created after 0004 point at their personal workspace."""
    return migrations.RunSQL(  # ``table`` is one of this module's constants
        f'UPDATE "{table}" t SET "user_id" = w."id" FROM "accounts_workspace" w '  # noqa: S608
        'WHERE w."personal_owner_id" = t."user_id" AND w."id" <> t."user_id"',
        migrations.RunSQL.noop,
    )


def _tenant_switch(*, model: str, table: str, null: bool, related_name: str, also: tuple = ()) -> list:
    """The column's switch; ``also``: more data changes, run while the table has no foreign key
    to validate (after one is back, any UPDATE leaves checks pending until the commit, and
    PostgreSQL refuses the index and constraint changes that follow)."""
    options = {"null": True, "blank": True} if null else {}
    return [
        migrations.AlterField(  # the foreign key to the user goes first (see the module docstring)
            model_name=model,
            name="user",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name=related_name,
                to=settings.AUTH_USER_MODEL,
                **options,
            ),
        ),
        _to_personal_workspace(table),
        *also,
        migrations.AlterField(
            model_name=model,
            name="user",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name=related_name,
                to="accounts.workspace",
                **options,
            ),
        ),
        migrations.RenameField(model_name=model, old_name="user", new_name="workspace"),
    ]


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_workspaces"),
    ]

    operations = [
        # --- ApiKey: the workspace's key, created by a member -----------------------------------
        migrations.RemoveIndex(model_name="apikey", name="apikey_user_created"),
        migrations.AddField(
            model_name="apikey",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",  # "api_keys" once ``user`` has left the user model (below)
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunSQL('UPDATE "accounts_apikey" SET "created_by_id" = "user_id"', migrations.RunSQL.noop),
        *_tenant_switch(model="apikey", table="accounts_apikey", null=False, related_name="api_keys"),
        migrations.AlterField(
            model_name="apikey",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="api_keys",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddIndex(
            model_name="apikey",
            index=models.Index(fields=["workspace", "-created_at"], name="apikey_workspace_created"),
        ),
        # --- ProviderCredential: "personal" keys become the workspace's ---------------------------
        migrations.RemoveConstraint(model_name="providercredential", name="providercred_one_personal"),
        migrations.RemoveConstraint(model_name="providercredential", name="providercred_scope_owner"),
        *_tenant_switch(
            model="providercredential",
            table="accounts_providercredential",
            null=True,
            related_name="provider_credentials",
            also=(
                migrations.RunSQL(
                    'UPDATE "accounts_providercredential" SET "scope" = \'workspace\' '
                    "WHERE \"scope\" = 'personal'",
                    'UPDATE "accounts_providercredential" SET "scope" = \'personal\' '
                    "WHERE \"scope\" = 'workspace'",
                ),
            ),
        ),
        migrations.AlterField(
            model_name="providercredential",
            name="scope",
            field=models.CharField(
                choices=[("global", "Global (operator)"), ("workspace", "Workspace (bring your own)")],
                max_length=16,
            ),
        ),
        migrations.AddConstraint(
            model_name="providercredential",
            constraint=models.UniqueConstraint(
                condition=models.Q(("scope", "workspace")),
                fields=("workspace", "provider"),
                name="providercred_one_workspace",
            ),
        ),
        migrations.AddConstraint(
            model_name="providercredential",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("scope", "global"), ("workspace__isnull", True)),
                    models.Q(("scope", "workspace"), ("workspace__isnull", False)),
                    _connector="OR",
                ),
                name="providercred_scope_owner",
            ),
        ),
        # --- InvalidKeyDay: refused keys counted per workspace and day ----------------------------
        migrations.RemoveConstraint(model_name="invalidkeyday", name="invalid_key_user_day"),
        *_tenant_switch(model="invalidkeyday", table="accounts_invalidkeyday", null=False, related_name="+"),
        migrations.AddConstraint(
            model_name="invalidkeyday",
            constraint=models.UniqueConstraint(fields=("workspace", "day"), name="invalid_key_workspace_day"),
        ),
    ]
