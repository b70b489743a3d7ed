"""``core.fastio.db_fetch``: statements are sent with ``$n`` placeholders built once per text."""

import asyncio

import pytest

from core.fastio import _raw_text, db_fetch, fast_lane_close


def test_placeholders_are_numbered_in_order_and_casts_kept():
    assert (
        _raw_text("SELECT %s, %s::date FROM t WHERE id = %s") == b"SELECT $1, $2::date FROM t WHERE id = $3"
    )
    assert _raw_text("SELECT 1") == b"SELECT 1"


def test_a_text_with_any_other_percent_is_left_to_psycopg():
    assert _raw_text("SELECT %s WHERE name LIKE 'a%%'") is None
    assert _raw_text("SELECT %(name)s") is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_both_kinds_of_text_run_with_their_parameters():
    async def run():
        try:
            numbered = await db_fetch("SELECT %s::int + 1, %s::text", [41, "plain"])
            percent = await db_fetch("SELECT %s::int * 2, 'a%%b'", [21])
            prepared = [await db_fetch("SELECT %s::int", [n], prepare=True) for n in (1, 2)]
        finally:
            await fast_lane_close()
        return numbered, percent, prepared

    numbered, percent, prepared = asyncio.run(run())

    assert numbered == [(42, "plain")]
    assert percent == [(42, "a%b")]
    assert prepared == [[(1,)], [(2,)]]
