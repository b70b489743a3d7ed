"""The proxy's tenant becomes the workspace: ``user`` → ``workspace`` on the usage log, its daily
rollups and the rate-limited days (``UsageEvent.api_key`` stays: its creator is the member).

Almost no row is rewritten: accounts 0004 gave every existing user a personal workspace whose id
is the user's id, so only the foreign keys change target. The rows of users created after 0004
(whose personal workspace has another id) are moved onto that workspace.

Per table, by hand (``_tenant_switch``) rather than ``AlterField``:

- the move happens between dropping the key to the users and adding the key to the workspaces:
  before, a workspace id in ``user_id`` fails the users key (Django makes a deferred key
  immediate before dropping it); after, a user id fails the workspaces key;
- the usage log and the rollups are written by every proxied call, and ``AlterField`` validates
  the new key in the lock that stops the writers for a full scan: here it is added ``NOT VALID``
  and then validated under a lock that lets calls keep settling (hence ``atomic = False``, as in
  0003).

Index and constraint renames are renames (``ALTER … RENAME``), not a rebuild (``RenameIndex``
would leave the state's index on the old field name). Backwards, rows go back to the personal
workspace's owner; a team workspace's rows have no user to go back to and stop the migration.
"""

import django.db.models.deletion
from django.db import migrations, models

WORKSPACES, USERS = "accounts_workspace", "accounts_user"

# Run after the column is renamed, before the new key is added.
TO_PERSONAL_WORKSPACE = (
    'UPDATE "{table}" t SET "workspace_id" = w."id" FROM "accounts_workspace" w '
    'WHERE w."personal_owner_id" = t."workspace_id" AND w."id" <> t."workspace_id"'
)
TO_PERSONAL_OWNER = (
    'UPDATE "{table}" t SET "user_id" = w."personal_owner_id" FROM "accounts_workspace" w '
    'WHERE w."id" = t."user_id" AND w."personal_owner_id" <> t."user_id"'
)


def _foreign_keys_on(schema_editor, table: str, column: str) -> list[str]:
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, table)
    return [name for name, info in constraints.items() if info["foreign_key"] and info["columns"] == [column]]


def _fk_move(schema_editor, *, table: str, old: str, new: str, to_table: str, remap: str) -> None:
    """Drop the foreign key of ``old``, rename the column to ``new``, move the rows (``remap``),
    then reference ``to_table``: added NOT VALID (a brief lock), validated without stopping inserts."""
    for name in _foreign_keys_on(schema_editor, table, old):
        schema_editor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
    schema_editor.execute(f'ALTER TABLE "{table}" RENAME COLUMN "{old}" TO "{new}"')
    schema_editor.execute(remap.format(table=table))
    constraint = f"{table}_{new}_fk_{to_table}_id"
    schema_editor.execute(
        f'ALTER TABLE "{table}" ADD CONSTRAINT "{constraint}" FOREIGN KEY ("{new}") '
        f'REFERENCES "{to_table}" ("id") DEFERRABLE INITIALLY DEFERRED NOT VALID'
    )
    schema_editor.execute(f'ALTER TABLE "{table}" VALIDATE CONSTRAINT "{constraint}"')


def _tenant_switch(
    *, model: str, table: str, field: models.ForeignKey
) -> migrations.SeparateDatabaseAndState:
    """``user`` (→ User) becomes ``workspace`` (→ Workspace, as ``field``) on ``table``."""

    def forward(apps, schema_editor):
        _fk_move(
            schema_editor,
            table=table,
            old="user_id",
            new="workspace_id",
            to_table=WORKSPACES,
            remap=TO_PERSONAL_WORKSPACE,
        )

    def backward(apps, schema_editor):
        _fk_move(
            schema_editor,
            table=table,
            old="workspace_id",
            new="user_id",
            to_table=USERS,
            remap=TO_PERSONAL_OWNER,
        )

    return migrations.SeparateDatabaseAndState(
        state_operations=[
            migrations.AlterField(model_name=model, name="user", field=field),
            migrations.RenameField(model_name=model, old_name="user", new_name="workspace"),
        ],
        database_operations=[migrations.RunPython(forward, backward)],
    )


def _tenant_field(**options) -> models.ForeignKey:
    return models.ForeignKey(
        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="accounts.workspace", **options
    )


def _unique_rename(*, model: str, table: str, old: str, new: str, fields: list[str]):
    """Rename a unique constraint (and its index) in place."""
    return migrations.SeparateDatabaseAndState(
        state_operations=[
            migrations.RemoveConstraint(model_name=model, name=old),
            migrations.AddConstraint(
                model_name=model, constraint=models.UniqueConstraint(fields=fields, name=new)
            ),
        ],
        database_operations=[
            migrations.RunSQL(
                f'ALTER TABLE "{table}" RENAME CONSTRAINT "{old}" TO "{new}"',
                f'ALTER TABLE "{table}" RENAME CONSTRAINT "{new}" TO "{old}"',
            )
        ],
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("accounts", "0004_workspaces"),
        ("proxy", "0004_usage_request_id_index"),
    ]

    operations = [
        # The usage log.
        _tenant_switch(model="usageevent", table="proxy_usageevent", field=_tenant_field(db_index=False)),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="usageevent", name="usage_user_recent"),
                migrations.AddIndex(
                    model_name="usageevent",
                    index=models.Index(fields=["workspace", "-created_at"], name="usage_workspace_recent"),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'ALTER INDEX "usage_user_recent" RENAME TO "usage_workspace_recent"',
                    'ALTER INDEX "usage_workspace_recent" RENAME TO "usage_user_recent"',
                )
            ],
        ),
        migrations.AlterField(
            model_name="usageevent",
            name="key_source",
            field=models.CharField(
                choices=[
                    ("workspace", "Workspace (BYOK)"),
                    ("personal", "Personal (BYOK, before workspaces)"),
                    ("global", "Global (operator)"),
                    ("env", "Environment (operator)"),
                    ("sandbox", "Sandbox"),
                    ("none", "None"),
                ],
                default="none",
                max_length=16,
            ),
        ),
        # Its daily rollups.
        _tenant_switch(
            model="usagedailyrollup", table="proxy_usagedailyrollup", field=_tenant_field(db_index=False)
        ),
        _unique_rename(
            model="usagedailyrollup",
            table="proxy_usagedailyrollup",
            old="rollup_user_provider_day",
            new="rollup_workspace_provider_day",
            fields=["workspace", "provider", "day"],
        ),
        # The rate-limited days (their column index stays, renamed with the column).
        _tenant_switch(model="ratelimitedday", table="proxy_ratelimitedday", field=_tenant_field()),
        _unique_rename(
            model="ratelimitedday",
            table="proxy_ratelimitedday",
            old="rate_limited_user_day",
            new="rate_limited_workspace_day",
            fields=["workspace", "day"],
        ),
    ]
