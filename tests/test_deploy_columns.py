"""Columns this release adds to tables the previous release writes: while a deploy drains the
old workers, their INSERTs do not name the new columns, so each must be nullable or have a
default in the database itself (Django's ``default=`` is applied in Python only)."""

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db

NEW_COLUMNS = [
    ("accounts_user", "language"),  # accounts 0011
    ("proxy_usagedailyrollup", "charge_credits"),  # proxy 0008, written by the old settle SQL
]


@pytest.mark.parametrize(("table", "column"), NEW_COLUMNS)
def test_a_new_column_accepts_the_previous_releases_inserts(table, column):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT is_nullable, column_default FROM information_schema.columns "
            "WHERE table_name = %s AND column_name = %s",
            [table, column],
        )
        row = cursor.fetchone()
    assert row is not None, f"{table}.{column} does not exist"
    is_nullable, column_default = row
    assert is_nullable == "YES" or column_default is not None, f"{table}.{column}: NOT NULL, no default"
