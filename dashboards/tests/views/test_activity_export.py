"""``/activity/export.csv``: the filtered range, streamed in keyset-paged chunks."""

from __future__ import annotations

import csv
import io
import tracemalloc
from datetime import timedelta

import pytest
from django.http import StreamingHttpResponse
from django.utils import timezone

from accounts.models import Role
from accounts.tenancy import SESSION_WORKSPACE_KEY
from dashboards.selectors.activity import EXPORT_HEADER, ActivityFilter, activity_queryset
from dashboards.tests.factories import ApiKeyFactory, UsageEventFactory, team_workspace_create
from dashboards.tests.views.activity_helpers import calls_insert

pytestmark = pytest.mark.django_db


def _rows(response) -> list[dict]:
    assert isinstance(response, StreamingHttpResponse)
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_the_export_is_an_attachment_with_a_header_and_the_customers_columns(client, user, workspace):
    key = ApiKeyFactory(workspace=workspace, created_by=user, name="backend")
    paid = UsageEventFactory(
        workspace=workspace,
        api_key=key,
        model="gpt-4o-mini",
        upstream_model="gpt-4o-mini",
        prompt_tokens=5,
        completion_tokens=7,
        total_tokens=12,
        credits_charged=4,
        cost_usd="0.5",
        request_id="req-1",
    )
    UsageEventFactory(
        workspace=workspace,
        api_key=key,
        total_tokens=99,
        created_at=paid.created_at - timedelta(seconds=1),
    )
    UsageEventFactory(workspace=workspace, status_code=502, created_at=paid.created_at - timedelta(seconds=2))
    client.force_login(user)

    response = client.get("/activity/export.csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    disposition = response["Content-Disposition"]
    assert disposition.startswith('attachment; filename="tollgate-activity-') and disposition.endswith(
        '.csv"'
    )
    assert response["Cache-Control"] == "private, no-store"
    rows = _rows(response)
    assert tuple(rows[0]) == EXPORT_HEADER and "cost_usd" not in rows[0]
    assert [row["call_id"] for row in rows][0] == str(paid.call_id)
    first = rows[0]
    assert first["time_utc"] == paid.created_at.isoformat()
    assert (first["key_name"], first["key_prefix"], first["member"]) == ("backend", key.prefix, user.email)
    assert (first["prompt_tokens"], first["completion_tokens"], first["total_tokens"]) == ("5", "7", "12")
    assert (first["charged_with"], first["charged_amount"], first["charged_unit"]) == (
        "credits",
        "4",
        "credits",
    )
    assert (rows[1]["charged_with"], rows[1]["charged_amount"], rows[1]["charged_unit"]) == (
        "plan",
        "99",
        "tokens",
    )
    assert (rows[2]["charged_with"], rows[2]["status_code"], rows[2]["key_name"]) == ("none", "502", "")
    assert not any(value in ("0.5", "0.500000") for row in rows for value in row.values())  # operator cost


def test_cells_a_spreadsheet_would_run_as_formulas_are_quoted(client, user, workspace):
    for i, name in enumerate(('=HYPERLINK("http://evil")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "plain")):
        key = ApiKeyFactory(workspace=workspace, created_by=user, name=name)
        UsageEventFactory(
            workspace=workspace,
            api_key=key,
            model="=cmd|' /C calc'!A0" if i == 0 else "gpt-4o-mini",
            created_at=timezone.now() - timedelta(seconds=i),
        )
    client.force_login(user)

    rows = _rows(client.get("/activity/export.csv"))

    assert [row["key_name"] for row in rows] == [
        '\'=HYPERLINK("http://evil")',
        "'+1+1",
        "'-2+3",
        "'@SUM(A1)",
        "'\tTAB",
        "plain",
    ]
    assert rows[0]["model"] == "'=cmd|' /C calc'!A0"
    assert rows[0]["time_utc"][0].isdigit()  # dates and numbers are left alone


def test_the_export_follows_the_filters_and_the_developers_keys(client, user, other_user):
    workspace = team_workspace_create(owner=other_user, members={user: Role.DEVELOPER})
    mine = ApiKeyFactory(workspace=workspace, created_by=user)
    theirs = ApiKeyFactory(workspace=workspace, created_by=other_user)
    for key in (mine, theirs):
        UsageEventFactory(workspace=workspace, api_key=key, status_code=200)
        UsageEventFactory(workspace=workspace, api_key=key, status_code=429)
    client.force_login(user)
    session = client.session
    session[SESSION_WORKSPACE_KEY] = workspace.pk
    session.save()

    assert {row["key_prefix"] for row in _rows(client.get("/activity/export.csv"))} == {mine.prefix}
    rows = _rows(client.get("/activity/export.csv?status=error"))
    assert [(row["key_prefix"], row["status_code"]) for row in rows] == [(mine.prefix, "429")]


def test_unusable_filters_send_the_member_to_the_page_that_says_why(client, user):
    client.force_login(user)
    response = client.get("/activity/export.csv?from=not-a-date")
    assert response.status_code == 302 and response["Location"] == "/activity/?from=not-a-date"
    assert "is not a date" in client.get(response["Location"]).content.decode()


def test_a_hundred_thousand_calls_stream_in_bounded_memory_and_match_the_filters_count(
    client, user, workspace
):
    key = ApiKeyFactory(workspace=workspace, created_by=user, name="bulk")
    calls_insert(workspace=workspace, count=100_000, newest=timezone.now(), api_key=key)
    UsageEventFactory.create_batch(3, workspace=workspace, status_code=200)  # outside the key filter
    client.force_login(user)
    expected = activity_queryset(
        workspace=workspace, filters=ActivityFilter(api_key_id=key.pk, status="ok")
    ).count()
    assert 60_000 < expected < 70_000  # every third call failed

    tracemalloc.start()
    try:
        response = client.get(f"/activity/export.csv?key={key.pk}&status=ok")
        lines = 0
        seen_bytes = 0
        for piece in response.streaming_content:  # consumed as a browser would, never joined
            lines += piece.count(b"\n")
            seen_bytes += len(piece)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert lines - 1 == expected  # one header line, then one line per call
    assert seen_bytes > 10_000_000  # the file is far larger than what it took to make it…
    assert peak < 30 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"  # …chunks of 2 000 rows, never all
