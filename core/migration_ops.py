"""Migration operations for the tables every proxied call writes: changes that do not stop them."""

from __future__ import annotations

from django.db import migrations


def index_drop_without_lock(*, table: str, name: str, column: str) -> migrations.RunPython:
    """Drop the plain index ``name`` ``CONCURRENTLY``, so calls keep settling into
    ``table`` meanwhile (Django's ``AlterField(db_index=False)`` also drops and re-validates the
    foreign key, which locks the table for a full scan). Reversed, the index is built again.
    The migration must set ``atomic = False``.
    """

    def forward(apps, schema_editor):
        schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')

    def backward(apps, schema_editor):
        schema_editor.execute(f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON "{table}" ("{column}")')

    return migrations.RunPython(forward, backward)
