"""The Activity selectors: keyset pages and export chunks across ties, the cursor, the charge."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from dashboards.selectors.activity import (
    NEWER,
    OLDER,
    Charge,
    Cursor,
    activity_export_rows,
    activity_page_get,
    call_charge,
    cursor_decode,
    cursor_encode,
)
from dashboards.tests.factories import UsageEventFactory
from proxy.models import UsageEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def tied(workspace):
    """23 calls, five to an instant: page and chunk borders fall inside a tie."""
    start = timezone.now()
    for i in range(23):
        UsageEventFactory(workspace=workspace, created_at=start - timedelta(seconds=i // 5))
    return list(
        UsageEvent.objects.filter(workspace=workspace)
        .order_by("-created_at", "-id")
        .values_list("call_id", flat=True)
    )


def test_pages_walk_the_order_exactly_both_ways(workspace, tied, django_assert_num_queries):
    pages, cursor = [], None
    while True:
        with django_assert_num_queries(1):
            page = activity_page_get(workspace=workspace, cursor=cursor, size=4)
        pages.append(page)
        if not page.older:
            break
        cursor = cursor_decode(page.older)
    assert [call.call_id for page in pages for call in page.calls] == tied
    assert pages[0].newer is None and all(page.newer for page in pages[1:])

    back, cursor = [], cursor_decode(pages[-1].newer)
    while cursor:
        page = activity_page_get(workspace=workspace, cursor=cursor, size=4)
        back = [call.call_id for call in page.calls] + back
        cursor = cursor_decode(page.newer) if page.newer else None
    assert back + [call.call_id for call in pages[-1].calls] == tied


def test_export_chunks_cross_ties_without_repeating_or_losing_a_row(
    workspace, tied, django_assert_num_queries
):
    with django_assert_num_queries(8):  # ⌈23 / 3⌉ chunks, the last one short
        rows = list(activity_export_rows(workspace=workspace, chunk=3))
    assert [row[1] for row in rows] == [str(call_id) for call_id in tied]


def test_the_cursor_round_trips_and_refuses_anything_else():
    cursor = Cursor(created_at=timezone.now(), id=42, direction=OLDER)
    assert cursor_decode(cursor_encode(cursor)) == cursor
    assert cursor_decode(cursor_encode(Cursor(created_at=cursor.created_at, id=1, direction=NEWER))).id == 1
    payload, signature = cursor_encode(cursor).rsplit(":", 1)
    forged = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    assert cursor_decode(f"{forged}:{signature}") is None
    assert cursor_decode("") is None and cursor_decode("x:y:z") is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"status_code": 502, "credits_charged": 0, "total_tokens": 10}, Charge("none", 0, "")),
        ({"status_code": 200, "credits_charged": 3, "total_tokens": 10}, Charge("credits", 3, "credits")),
        ({"status_code": 200, "credits_charged": 0, "total_tokens": 10}, Charge("plan", 10, "tokens")),
        ({"status_code": 200, "emails": 2}, Charge("plan", 2, "emails")),
        ({"status_code": 200, "total_tokens": 10, "key_source": "workspace"}, Charge("own_key", 0, "")),
    ],
)
def test_what_a_call_was_charged(fields, expected, settings):
    settings.BYOK_COUNTS_AGAINST_QUOTA = False
    values = {"credits_charged": 0, "total_tokens": 0, "emails": 0, "key_source": "global", **fields}
    assert call_charge(**values) == expected


def test_byok_tokens_count_when_the_operator_says_so(settings):
    settings.BYOK_COUNTS_AGAINST_QUOTA = True
    charge = call_charge(status_code=200, credits_charged=0, total_tokens=8, emails=0, key_source="workspace")
    assert charge == Charge("plan", 8, "tokens")
