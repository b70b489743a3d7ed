"""Model instances from one hand-written, cached SQL statement — for the proxy's hot path.

A queryset compiles the same WHERE on every call, a large share of a proxied call's CPU.
``model_rows_get`` compiles nothing: the SELECT is built once per (model, condition) from the
model's meta, rows go through each field's database converters (so encrypted fields decrypt as
with the ORM) and ``Model.from_db``.
"""

from __future__ import annotations

import functools

from django.db import DEFAULT_DB_ALIAS, connection, connections

from core import fastio


@functools.cache
def sql_connection():
    """A database wrapper for building SQL text and adapting values, never connected.

    ``django.db.connection`` is per asyncio task (asgiref's ``Local``): on the event loop, each
    call's first touch built a new wrapper — seven objects in a reference cycle, left to the
    cyclic collector — only to quote a name. Same settings, so the same vendor and quoting.
    """
    return connections.create_connection(DEFAULT_DB_ALIAS)


def synchronous_commit_off_cte(synchronous_commit: bool) -> str:
    """A CTE term that makes this transaction's commit asynchronous (PostgreSQL), or "" to keep it
    synchronous.

    ``set_config(..., true)`` is ``SET LOCAL`` from inside the statement, so it costs no round
    trip. An asynchronous commit keeps every guarantee except durability of the last few hundred
    milliseconds before a server crash (the WAL is replayed as a consistent prefix): see
    docs/how-a-call-flows.md for what that means for money.
    """
    return "" if synchronous_commit else ", _cfg AS (SELECT set_config('synchronous_commit', 'off', true))"


@functools.cache
def table_quoted(model) -> str:
    """``model``'s table name, quoted for the database (built once)."""
    return sql_connection().ops.quote_name(model._meta.db_table)


@functools.cache
def _select_sql(model, where: str) -> tuple[str, tuple]:
    qn, table = sql_connection().ops.quote_name, table_quoted(model)
    fields = tuple(model._meta.concrete_fields)
    columns = ", ".join(f"{table}.{qn(f.column)}" for f in fields)
    return f"SELECT {columns} FROM {table} WHERE {where}", fields  # noqa: S608


def _rows_build(model, fields, rows) -> list:
    # As the SQL compiler does: backend converters, then the field's own (e.g. decryption).
    builder = sql_connection()
    converters = [
        (f.cached_col, builder.ops.get_db_converters(f.cached_col) + f.get_db_converters(builder))
        for f in fields
    ]
    attnames = [f.attname for f in fields]
    instances = []
    for row in rows:
        values = []
        for (col, field_converters), value in zip(converters, row, strict=True):
            for converter in field_converters:
                value = converter(value, col, builder)
            values.append(value)
        instances.append(model.from_db(builder.alias, attnames, values))
    return instances


def model_rows_get(model, *, where: str, params: list) -> list:
    """Instances of ``model`` matching ``where`` (SQL with ``%s`` placeholders, trusted text)."""
    sql, fields = _select_sql(model, where)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return _rows_build(model, fields, rows)


async def model_rows_aget(model, *, where: str, params: list) -> list:
    """``model_rows_get`` on the fast lane's async connection pool (PostgreSQL, no thread)."""
    sql, fields = _select_sql(model, where)
    return _rows_build(model, fields, await fastio.db_fetch(sql, params))
