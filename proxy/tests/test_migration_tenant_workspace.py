"""proxy 0005: the usage log, its rollups and the rate-limited days move from the user to the
workspace, on PostgreSQL, with rows in them.

A user migrated by accounts 0004 has a personal workspace with their own id: their rows keep
their values. A user created after 0004 has a personal workspace with another id: their rows are
moved onto it. The foreign keys end up referencing the workspace table and validated, and the
constraint and index names say "workspace".
"""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("accounts", "0004_workspaces"), ("proxy", "0004_usage_request_id_index")]

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def _latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


@pytest.fixture(autouse=True)
def _latest_schema_after():
    """Leave the schema as every other test expects it, workspace ids apart from user ids."""
    yield
    _migrate(_latest())
    with connection.cursor() as cursor:
        cursor.execute("ALTER SEQUENCE accounts_workspace_id_seq RESTART WITH 100001")


def _rows_for(old, user) -> None:
    today = timezone.now().date()
    old.get_model("proxy", "UsageEvent").objects.create(
        user=user, service="router", endpoint="/v1/chat/completions", status_code=200, total_tokens=25
    )
    old.get_model("proxy", "UsageDailyRollup").objects.create(
        user=user, provider="groq", day=today, requests=1, tokens=25
    )
    old.get_model("proxy", "RateLimitedDay").objects.create(user=user, day=today, minutes=2)


def _constraints(table: str) -> dict:
    with connection.cursor() as cursor:
        return connection.introspection.get_constraints(cursor, table)


def test_rows_follow_their_users_personal_workspace_and_the_keys_are_validated():
    old = _migrate(BEFORE)
    User, Workspace = old.get_model("accounts", "User"), old.get_model("accounts", "Workspace")
    migrated = User.objects.create(email="migrated@example.com", password="!")
    Workspace.objects.create(id=migrated.pk, name="M", slug="m-ws", personal_owner=migrated)
    late = User.objects.create(email="late@example.com", password="!")
    late_workspace = Workspace.objects.create(name="L", slug="l-ws", personal_owner=late)
    assert late_workspace.pk != late.pk  # the case the UPDATE exists for
    _rows_for(old, migrated)
    _rows_for(old, late)

    new = _migrate(_latest())

    for model in ("UsageEvent", "UsageDailyRollup", "RateLimitedDay"):
        rows = set(new.get_model("proxy", model).objects.values_list("workspace_id", flat=True))
        assert rows == {migrated.pk, late_workspace.pk}, model
    for table in ("proxy_usageevent", "proxy_usagedailyrollup", "proxy_ratelimitedday"):
        keys = [
            c for c in _constraints(table).values() if c["foreign_key"] and c["columns"] == ["workspace_id"]
        ]
        assert [c["foreign_key"] for c in keys] == [("accounts_workspace", "id")], table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text, convalidated FROM pg_constraint "
            "WHERE contype = 'f' AND conrelid::regclass::text LIKE 'proxy_%%'"
        )
        assert all(valid for _table, valid in cursor.fetchall())
    assert "rollup_workspace_provider_day" in _constraints("proxy_usagedailyrollup")
    assert "rate_limited_workspace_day" in _constraints("proxy_ratelimitedday")
    assert "usage_workspace_recent" in _constraints("proxy_usageevent")
    # PostgreSQL 18 names NOT NULL constraints (``<table>_<column>_not_null``) and keeps the name
    # when the column is renamed; such a name carries no rule of ours, so it is not counted.
    leftovers = {c for c in _constraints("proxy_usageevent") if "user" in c and not c.endswith("_not_null")}
    assert not leftovers


def test_backwards_the_rows_go_back_to_the_personal_workspaces_owner():
    old = _migrate(BEFORE)
    User, Workspace = old.get_model("accounts", "User"), old.get_model("accounts", "Workspace")
    late = User.objects.create(email="late@example.com", password="!")
    Workspace.objects.create(name="L", slug="l-ws", personal_owner=late)
    _rows_for(old, late)
    _migrate(_latest())

    old = _migrate(BEFORE)

    for model in ("UsageEvent", "UsageDailyRollup", "RateLimitedDay"):
        rows = set(old.get_model("proxy", model).objects.values_list("user_id", flat=True))
        assert rows == {late.pk}, model
    keys = [c for c in _constraints("proxy_usageevent").values() if c["foreign_key"]]
    assert ("accounts_user", "id") in [c["foreign_key"] for c in keys]
    assert "rollup_user_provider_day" in _constraints("proxy_usagedailyrollup")
