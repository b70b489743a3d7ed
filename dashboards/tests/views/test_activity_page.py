"""``/activity/`` and ``/activity/<call_id>/``: the workspace's calls, keyset-paged, filtered,
and only what the member may see."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from accounts.tenancy import SESSION_WORKSPACE_KEY
from dashboards.selectors.activity import OLDER, Cursor, cursor_encode
from dashboards.tests.factories import ApiKeyFactory, UsageEventFactory
from dashboards.tests.views.activity_helpers import call_ids, link
from proxy.models import UsageEvent

pytestmark = pytest.mark.django_db


def _switch(client, workspace):
    session = client.session
    session[SESSION_WORKSPACE_KEY] = workspace.pk
    session.save()


def _page(client, url="/activity/", **headers):
    response = client.get(url, **headers)
    assert response.status_code == 200, response.content[:300]
    return response.content.decode()


def test_activity_needs_login(client):
    for url in ("/activity/", "/activity/export.csv", f"/activity/{uuid.uuid4()}/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_navigation_and_the_dashboard_link_to_activity(client, user, workspace):
    UsageEventFactory.create_batch(12, workspace=workspace)
    client.force_login(user)

    html = _page(client, "/dashboard/")

    assert '<a href="/activity/" data-tab="activity">Activity</a>' in html
    assert 'id="see-all-activity"' in html and "See all activity" in html
    assert html.count("<tr data-status=") == 10  # the dashboard keeps the last 10 calls


def test_a_row_shows_time_key_models_provider_tokens_latency_status_and_charge(client, user, workspace):
    key = ApiKeyFactory(workspace=workspace, created_by=user, name="backend")
    at = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    paid = UsageEventFactory(
        workspace=workspace,
        api_key=key,
        model="gpt-4o-mini",
        upstream_model="llama-3.1-8b-instant",
        provider="groq",
        prompt_tokens=1200,
        completion_tokens=345,
        total_tokens=1545,
        latency_ms=1234,
        credits_charged=3,
        cost_usd="0.987654",
        created_at=at,
    )
    UsageEventFactory(workspace=workspace, api_key=key, total_tokens=77, created_at=at - timedelta(seconds=1))
    UsageEventFactory(
        workspace=workspace,
        api_key=key,
        status_code=502,
        error_code="upstream_error",
        created_at=at - timedelta(1),
    )
    user.time_zone = "Africa/Algiers"  # UTC+1: the viewer reads the time in their own zone
    user.save(update_fields=["time_zone"])
    client.force_login(user)

    html = _page(client)

    assert call_ids(html)[0] == str(paid.call_id)
    assert re.search(
        rf'<a href="/activity/{paid.call_id}/">'
        r'<time datetime="2026-03-04T05:06:07Z"[^>]*>4 Mar 2026, 06:06</time>',
        html,
    )
    assert "backend" in html and key.prefix in html
    assert "gpt-4o-mini → llama-3.1-8b-instant" in html and "groq" in html
    assert "1,200 / 345" in html and "1,234 ms" in html
    assert "3 credits" in html  # paid by credits
    assert "77 tokens of the plan" in html  # counted against the plan
    assert "not charged" in html and "upstream_error" in html  # a failed call charges nothing
    assert "0.987654" not in html and "cost" not in html.lower()  # the operator's cost is not shown
    assert 'class="dash-table dash-table--calls activity-table table-cards"' in html
    assert 'data-label="Charge"' in html


def test_pages_of_fifty_have_no_duplicates_or_gaps_while_calls_arrive(client, user, workspace):
    start = timezone.now() - timedelta(hours=1)
    # 130 calls, four to an instant, so the id breaks the ties across page borders.
    for i in range(130):
        UsageEventFactory(workspace=workspace, created_at=start - timedelta(seconds=i // 4))
    original = {str(call_id) for call_id in UsageEvent.objects.values_list("call_id", flat=True)}
    client.force_login(user)

    down, pages, url = [], [], "/activity/"
    while url:
        html = _page(client, url)
        pages.append(call_ids(html))
        down += pages[-1]
        # Calls made between two page loads: newer than every row of the walk so far, one of
        # them at the very instant of the first page's top row.
        UsageEventFactory.create_batch(3, workspace=workspace, created_at=timezone.now())
        UsageEventFactory(workspace=workspace, created_at=start)
        url = link(html, "next")
        assert url is None or ("cursor=" in url and "offset" not in url and "page=" not in url)

    assert [len(rows) for rows in pages] == [50, 50, 30]
    assert len(down) == len(set(down)) == 130
    assert set(down) == original

    # Back up with "Newer" from the last page: the same pages, then the calls that arrived.
    up = []
    url = link(html, "prev")
    while url:
        html = _page(client, url)
        up.append(call_ids(html))
        url = link(html, "prev")
    arrived = set(UsageEvent.objects.values_list("call_id", flat=True)) - {uuid.UUID(c) for c in original}
    assert up[:2] == [pages[1], pages[0]]
    assert len(up) == 3 and {uuid.UUID(c) for c in up[2]} == arrived and len(arrived) == 12
    assert 'id="activity-newest"' in html  # a way back to the first page


def test_a_forged_or_stale_cursor_shows_the_newest_page_with_a_note(client, user, workspace):
    UsageEventFactory.create_batch(3, workspace=workspace)
    client.force_login(user)

    for cursor in ("garbage", "W10:1abc:xyz", "a" * 5000):
        html = _page(client, f"/activity/?cursor={cursor}")
        assert len(call_ids(html)) == 3
        assert "not valid any more" in html
    # A genuine cursor past the oldest call (a link kept after the data it pointed at changed).
    past = cursor_encode(Cursor(created_at=timezone.now() - timedelta(days=400), id=1, direction=OLDER))
    html = _page(client, f"/activity/?{urlencode({'cursor': past})}")
    assert len(call_ids(html)) == 3 and "not valid" not in html


def test_an_empty_workspace_says_so(client, user):
    client.force_login(user)
    html = _page(client)
    assert "No calls." in html and 'rel="next"' not in html


def test_the_page_costs_a_fixed_number_of_queries_whatever_the_rows(
    client, user, workspace, django_assert_max_num_queries
):
    keys = [ApiKeyFactory(workspace=workspace, created_by=user, name=f"k{i}") for i in range(5)]
    for i in range(60):
        UsageEventFactory(workspace=workspace, api_key=keys[i % 5])
    client.force_login(user)

    with django_assert_max_num_queries(8):  # session, user, workspace, keys, one page of calls…
        html = _page(client)

    assert len(call_ids(html)) == 50


# --- filters ----------------------------------------------------------------------------------


@pytest.fixture
def mixed(user, workspace):
    """Calls of two keys, two models, three statuses and three days."""
    now = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    one = ApiKeyFactory(workspace=workspace, created_by=user, name="one")
    two = ApiKeyFactory(workspace=workspace, created_by=user, name="two")
    rows = {
        "one-ok-today": dict(api_key=one, model="gpt-4o-mini", status_code=200, created_at=now),
        "one-429-today": dict(api_key=one, model="gpt-4o-mini", status_code=429, created_at=now),
        "two-ok-yesterday": dict(
            api_key=two, model="claude-3-5-haiku", status_code=200, created_at=now - timedelta(days=1)
        ),
        "two-502-old": dict(
            api_key=two,
            model="gpt-4o",
            upstream_model="openai/gpt-4o",
            status_code=502,
            created_at=now - timedelta(days=5),
        ),
    }
    calls = {name: UsageEventFactory(workspace=workspace, **fields) for name, fields in rows.items()}
    return {"now": now, "one": one, "two": two, "calls": calls}


def _shown(client, query, mixed):
    html = _page(client, f"/activity/?{urlencode(query)}")
    by_id = {str(call.call_id): name for name, call in mixed["calls"].items()}
    return sorted(by_id[call_id] for call_id in call_ids(html)), html


def test_each_filter(client, user, mixed):
    client.force_login(user)
    today = mixed["now"].date()
    cases = [
        ({"key": mixed["one"].pk}, ["one-429-today", "one-ok-today"]),
        ({"model": "gpt-4o-mini"}, ["one-429-today", "one-ok-today"]),
        ({"model": "openai/gpt-4o"}, ["two-502-old"]),  # the model that served matches too
        ({"status": "ok"}, ["one-ok-today", "two-ok-yesterday"]),
        ({"status": "error"}, ["one-429-today", "two-502-old"]),
        ({"status": "429"}, ["one-429-today"]),
        (
            {"from": (today - timedelta(days=1)).isoformat()},
            ["one-429-today", "one-ok-today", "two-ok-yesterday"],
        ),
        (
            {"to": (today - timedelta(days=1)).isoformat()},
            ["two-502-old", "two-ok-yesterday"],
        ),  # "to" is included
        ({"from": today.isoformat(), "to": today.isoformat()}, ["one-429-today", "one-ok-today"]),
        ({"key": mixed["two"].pk, "status": "error"}, ["two-502-old"]),
        ({"member": user.pk}, ["one-429-today", "one-ok-today", "two-502-old", "two-ok-yesterday"]),
    ]
    for query, expected in cases:
        shown, html = _shown(client, query, mixed)
        assert shown == expected, query
        assert "ignored" not in html, query


def test_bad_filters_are_dropped_with_a_note_never_a_500(client, user, mixed, other_user, other_workspace):
    foreign = ApiKeyFactory(workspace=other_workspace, created_by=other_user)
    client.force_login(user)
    everything = sorted(mixed["calls"])
    cases = [
        ({"key": foreign.pk}, "Unknown key filter ignored."),
        ({"key": "1e9"}, "Unknown key filter ignored."),
        ({"key": "9" * 40}, "Unknown key filter ignored."),
        ({"member": other_user.pk}, "Unknown member filter ignored."),
        ({"status": "teapot"}, "Unknown status filter ignored."),
        ({"status": "999"}, "Unknown status filter ignored."),
        ({"model": "m" * 129}, "Model filter ignored"),
        ({"from": "2026-13-45"}, "is not a date"),
        ({"to": "yesterday"}, "is not a date"),
        ({"from": "0001-01-01"}, "is not a date"),
        ({"to": "9999-12-31"}, "is not a date"),
        ({"from": "2026-05-02", "to": "2026-05-01"}, "The range ends before it starts"),
    ]
    for query, note in cases:
        shown, html = _shown(client, query, mixed)
        assert note in html, query
        assert shown == everything, query


def test_filters_survive_paging_and_reach_the_export_link(client, user, workspace):
    key = ApiKeyFactory(workspace=workspace, created_by=user)
    for i in range(120):
        UsageEventFactory(workspace=workspace, api_key=key, status_code=200 if i % 2 else 502)
    UsageEventFactory.create_batch(5, workspace=workspace, status_code=200)  # no key
    client.force_login(user)

    first = _page(client, f"/activity/?key={key.pk}&status=ok")
    older = link(first, "next")
    second = _page(client, older)

    assert f"key={key.pk}" in older and "status=ok" in older
    assert (len(call_ids(first)), len(call_ids(second))) == (50, 10)
    assert 'data-status="502"' not in first + second
    assert f'href="/activity/export.csv?key={key.pk}&amp;status=ok"' in first
