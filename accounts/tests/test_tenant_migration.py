"""accounts 0005: keys, provider keys and refused-key counters move from the user to the
workspace, on real data the deploy may meet.

The users of before 0004 keep their ids (their personal workspace has the same id). These tests
cover the others: users created between 0004 and 0005, whose personal workspace has another
id, so their rows are rewritten. One such user's workspace id may even be another user's id
(both sequences move on), the case that breaks a per-row unique check or a deferred foreign key
left in place during the rewrite.
"""

from datetime import date

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("accounts", "0004_workspaces")]
DAY = date(2026, 12, 1)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def _latest():
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


@pytest.fixture(autouse=True)
def _latest_schema_after():
    """Leave the schema as every other test expects it, workspace ids apart from user ids."""
    yield
    _migrate(_latest())
    with connection.cursor() as cursor:
        cursor.execute("ALTER SEQUENCE accounts_workspace_id_seq RESTART WITH 100001")


def _customer(old, *, user, workspace_id: int) -> None:
    """A user as 0004 stored them: their personal workspace (id ``workspace_id``), a key, a
    provider key and a refused-key day."""
    old.get_model("accounts", "Workspace").objects.create(
        id=workspace_id, name=user.email, slug=f"ws-{user.pk}", personal_owner_id=user.pk
    )
    old.get_model("accounts", "ApiKey").objects.create(
        user_id=user.pk, name="prod", prefix="sk_agentai_Mig", key_hash=f"{user.pk:064x}"
    )
    old.get_model("accounts", "ProviderCredential").objects.create(
        provider="deepseek",
        scope="personal",
        user_id=user.pk,
        secret=f"sk-byok-{user.pk:08d}",
        fingerprint="0" * 64,
        masked="sk-by…00",
    )
    old.get_model("accounts", "InvalidKeyDay").objects.create(
        user_id=user.pk, day=DAY, minutes=user.pk % 7 + 1
    )


def test_rows_of_users_made_after_0004_follow_them_to_their_personal_workspace():
    latest = _latest()
    old = _migrate(BEFORE)
    User = old.get_model("accounts", "User")
    early, b, c = (
        User.objects.create(email=f"{name}@example.com", password="!") for name in ("early", "b", "c")
    )
    # ``early`` as 0004 made them (same id); b's workspace took c's user id, c's one no user has.
    expected_workspace = {early.pk: early.pk, b.pk: c.pk, c.pk: 10**6 + c.pk}
    for user in (early, b, c):
        _customer(old, user=user, workspace_id=expected_workspace[user.pk])

    new = _migrate(latest)

    for user_id, workspace_id in expected_workspace.items():
        key = new.get_model("accounts", "ApiKey").objects.get(key_hash=f"{user_id:064x}")
        assert (key.workspace_id, key.created_by_id) == (workspace_id, user_id)
        credential = new.get_model("accounts", "ProviderCredential").objects.get(workspace_id=workspace_id)
        assert credential.scope == "workspace"
        day = new.get_model("accounts", "InvalidKeyDay").objects.get(workspace_id=workspace_id)
        assert (day.day, day.minutes) == (DAY, user_id % 7 + 1)
    assert not new.get_model("accounts", "ProviderCredential").objects.filter(scope="personal").exists()
