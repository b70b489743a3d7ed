"""The call log's admin list at scale: bounded queries, no DISTINCT, no COUNT over the whole
table, exact search by email, request id and call id (core/admin_lists.py, proxy/admin.py)."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import core.admin_lists
from proxy.models import UsageEvent

from .factories import UserFactory

pytestmark = pytest.mark.django_db

URL = "/admin/proxy/usageevent/"


def _event(user, **fields) -> UsageEvent:
    """A call in ``user``'s personal workspace."""
    values = {
        "service": "router",
        "endpoint": "/v1/chat/completions",
        "provider": "deepseek",
        "status_code": 200,
    }
    return UsageEvent.objects.create(workspace=user.personal_workspace, **{**values, **fields})


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def _unbounded_counts(queries) -> list[str]:
    """COUNT queries over the call log that read the whole table (no LIMIT inside)."""
    return [
        q["sql"]
        for q in queries
        if "COUNT(" in q["sql"].upper() and "proxy_usageevent" in q["sql"] and "LIMIT" not in q["sql"].upper()
    ]


@pytest.mark.parametrize(
    "query",
    ["", "?recent=24h", "?provider=deepseek", "?status=5xx", "?key_source=global&is_fallback__exact=1"],
)
def test_changelist_reads_no_distinct_and_no_full_count(staff_client, query):
    users = UserFactory.create_batch(3)
    for i in range(12):
        _event(users[i % 3], status_code=200 if i % 4 else 502, request_id=f"req-{i}")

    with CaptureQueriesContext(connection) as ctx:
        response = staff_client.get(URL + query)

    assert response.status_code == 200
    sqls = [q["sql"] for q in ctx.captured_queries]
    assert not [s for s in sqls if "DISTINCT" in s.upper()]
    assert _unbounded_counts(ctx.captured_queries) == []
    assert len(sqls) <= 10  # session, user, estimate, count, page (workspaces joined), not one per row


def test_changelist_is_newest_first_with_workspaces_joined(staff_client):
    user = UserFactory()
    older = _event(user, request_id="older")
    newer = _event(user, request_id="newer")
    UsageEvent.objects.filter(pk=older.pk).update(created_at=newer.created_at.replace(year=2020))

    response = staff_client.get(URL)

    rows = list(response.context["cl"].result_list)
    assert [e.pk for e in rows] == [newer.pk, older.pk]
    assert "workspace" in rows[0]._state.fields_cache  # select_related: no query per row


def test_search_by_email_finds_only_the_calls_of_that_users_personal_workspace(staff_client):
    alice, bob = UserFactory(email="alice@example.com"), UserFactory(email="bob@example.com")
    mine = _event(alice)
    _event(bob)

    response = staff_client.get(URL, {"q": "Alice@Example.com"})

    assert [e.pk for e in response.context["cl"].result_list] == [mine.pk]


def test_search_by_request_id_and_call_id_is_exact(staff_client):
    user = UserFactory()
    wanted = _event(user, request_id="4f1c2a9e8b7d4c3e9a0b1c2d3e4f5a6b")
    _event(user, request_id="4f1c2a9e8b7d4c3e9a0b1c2d3e4f5a6bff")  # a longer id: no prefix match

    by_request = staff_client.get(URL, {"q": wanted.request_id})
    by_call = staff_client.get(URL, {"q": str(wanted.call_id)})
    partial = staff_client.get(URL, {"q": wanted.request_id[:8]})

    assert [e.pk for e in by_request.context["cl"].result_list] == [wanted.pk]
    assert [e.pk for e in by_call.context["cl"].result_list] == [wanted.pk]
    assert list(partial.context["cl"].result_list) == []


def test_search_reads_no_like_scan(staff_client):
    _event(UserFactory(), request_id="abc")

    with CaptureQueriesContext(connection) as ctx:
        staff_client.get(URL, {"q": "abc"})

    assert not [q["sql"] for q in ctx.captured_queries if re.search(r"\bLIKE\b", q["sql"], re.IGNORECASE)]


def test_big_unfiltered_table_shows_the_planner_estimate_without_counting(staff_client, monkeypatch):
    user = UserFactory()
    for _ in range(5):
        _event(user)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE proxy_usageevent")  # sees this transaction's rows
    monkeypatch.setattr(core.admin_lists, "COUNT_CAP", 3)

    with CaptureQueriesContext(connection) as ctx:
        response = staff_client.get(URL)

    assert response.context["cl"].result_count == 5
    assert not [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()]


def test_filtered_count_stops_at_the_cap(staff_client, monkeypatch):
    user = UserFactory()
    for _ in range(5):
        _event(user, provider="groq")
    monkeypatch.setattr(core.admin_lists, "COUNT_CAP", 3)

    response = staff_client.get(URL, {"provider": "groq"})

    assert response.context["cl"].result_count == 4  # COUNT_CAP + 1: "more than the cap"
