"""Who sees which calls on the Activity pages: the workspace's members only; owners and admins
every call, other members the calls of the keys they created; one call's page answers 404
outside that."""

from __future__ import annotations

import uuid

import pytest

from accounts.models import Role
from accounts.tenancy import SESSION_WORKSPACE_KEY
from dashboards.tests.factories import ApiKeyFactory, UsageEventFactory, team_workspace_create
from dashboards.tests.views.activity_helpers import call_ids

pytestmark = pytest.mark.django_db


def _switch(client, workspace):
    session = client.session
    session[SESSION_WORKSPACE_KEY] = workspace.pk
    session.save()


@pytest.fixture
def team(user, other_user):
    """``other_user`` owns the team; ``user`` is a developer in it. One key and call each, and
    a call of no key (made before keys had creators, or with a deleted key)."""
    workspace = team_workspace_create(owner=other_user, members={user: Role.DEVELOPER}, name="Orbit")
    owners_key = ApiKeyFactory(workspace=workspace, created_by=other_user, name="owners-key")
    devs_key = ApiKeyFactory(workspace=workspace, created_by=user, name="devs-key")
    return {
        "workspace": workspace,
        "owners_key": owners_key,
        "devs_key": devs_key,
        "owners_call": UsageEventFactory(workspace=workspace, api_key=owners_key, model="owner-model"),
        "devs_call": UsageEventFactory(workspace=workspace, api_key=devs_key, model="dev-model"),
        "keyless_call": UsageEventFactory(workspace=workspace, api_key=None, model="keyless-model"),
    }


def test_a_developer_sees_only_the_calls_and_keys_they_created(client, user, team):
    client.force_login(user)
    _switch(client, team["workspace"])

    html = client.get("/activity/").content.decode()

    assert call_ids(html) == [str(team["devs_call"].call_id)]
    assert "devs-key" in html and "owners-key" not in html and team["owners_key"].prefix not in html
    assert 'name="member"' not in html  # the member filter is for owners and admins
    assert "the calls of the keys you created" in html
    # Naming the owner's key or the owner as a filter shows nothing of theirs.
    for query in (f"key={team['owners_key'].pk}", f"member={team['owners_key'].created_by_id}"):
        html = client.get(f"/activity/?{query}").content.decode()
        assert "ignored" in html and call_ids(html) == [str(team["devs_call"].call_id)]
    # Nor does the dashboard's short list.
    html = client.get("/dashboard/").content.decode()
    assert "owner-model" not in html and "keyless-model" not in html and "dev-model" in html


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN])
def test_owners_and_admins_see_every_call_and_filter_by_member(client, user, other_user, role):
    workspace = team_workspace_create(owner=other_user, members={} if role == Role.OWNER else {user: role})
    viewer = other_user if role == Role.OWNER else user
    theirs = ApiKeyFactory(workspace=workspace, created_by=other_user)
    colleague_key = ApiKeyFactory(workspace=workspace, created_by=user if role == Role.ADMIN else None)
    calls = [
        UsageEventFactory(workspace=workspace, api_key=theirs),
        UsageEventFactory(workspace=workspace, api_key=colleague_key),
        UsageEventFactory(workspace=workspace, api_key=None),
    ]
    client.force_login(viewer)
    _switch(client, workspace)

    html = client.get("/activity/").content.decode()
    assert sorted(call_ids(html)) == sorted(str(call.call_id) for call in calls)
    assert 'name="member"' in html and other_user.email in html

    html = client.get(f"/activity/?member={other_user.pk}").content.decode()
    assert call_ids(html) == [str(calls[0].call_id)]


def test_a_billing_member_sees_the_calls_of_their_own_keys(client, user, other_user):
    workspace = team_workspace_create(owner=other_user, members={user: Role.BILLING})
    UsageEventFactory(workspace=workspace, api_key=ApiKeyFactory(workspace=workspace, created_by=other_user))
    client.force_login(user)
    _switch(client, workspace)
    assert call_ids(client.get("/activity/").content.decode()) == []


def test_a_non_member_naming_the_workspace_gets_404(client, other_user, team):
    stranger = other_user.__class__.objects.create_user(email="stranger@example.com", password="x" * 12)
    client.force_login(stranger)
    workspace = team["workspace"]
    urls = ("/activity/", "/activity/export.csv", f"/activity/{team['owners_call'].call_id}/")
    for ref in (str(workspace.pk), workspace.slug):
        for url in urls:
            response = client.get(url, HTTP_X_WORKSPACE=ref)
            assert response.status_code == 404, (url, ref)
            assert b"Orbit" not in response.content and b"owners-key" not in response.content


def test_a_session_choice_of_a_workspace_one_is_not_in_shows_the_personal_one(client, user, other_user, team):
    stranger_workspace = other_user.personal_workspace
    UsageEventFactory(workspace=stranger_workspace, model="strangers-model")
    mine = UsageEventFactory(workspace=user.personal_workspace)
    client.force_login(user)
    _switch(client, stranger_workspace)

    html = client.get("/activity/").content.decode()

    assert call_ids(html) == [str(mine.call_id)] and "strangers-model" not in html


def test_one_calls_page_shows_its_details(client, user, workspace):
    key = ApiKeyFactory(workspace=workspace, created_by=user, name="backend")
    call = UsageEventFactory(
        workspace=workspace,
        api_key=key,
        request_id="req-abc-123",
        endpoint="/v1/chat/completions",
        provider="groq",
        model="gpt-4o-mini",
        upstream_model="llama-3.1-8b-instant",
        prompt_tokens=10,
        completion_tokens=20,
        total_tokens=30,
        latency_ms=456,
        status_code=502,
        error_code="upstream_error",
        is_fallback=True,
        is_budget_fallback=False,
        cost_usd="1.234567",
    )
    client.force_login(user)

    response = client.get(f"/activity/{call.call_id}/")

    html = response.content.decode()
    assert response.status_code == 200
    for text in (
        str(call.call_id),
        "req-abc-123",
        "/v1/chat/completions",
        "groq",
        "gpt-4o-mini",
        "llama-3.1-8b-instant",
        "backend",
        key.prefix,
        user.email,
        "upstream_error",
        "456 ms",
        "10 in · 20 out · 30 in all",
        "not charged",
    ):
        assert text in html, text
    assert '<dd data-flag="is_fallback">yes</dd>' in html
    assert '<dd data-flag="is_budget_fallback">no</dd>' in html
    assert "1.234567" not in html


def test_one_calls_page_is_404_outside_the_workspace_or_the_developers_keys(
    client, user, other_user, other_workspace, team
):
    foreign = UsageEventFactory(workspace=other_workspace)
    client.force_login(user)
    _switch(client, team["workspace"])  # user is a developer there

    assert client.get(f"/activity/{team['devs_call'].call_id}/").status_code == 200
    for call_id in (team["owners_call"].call_id, team["keyless_call"].call_id, foreign.call_id, uuid.uuid4()):
        response = client.get(f"/activity/{call_id}/")
        assert response.status_code == 404, call_id
        assert b"owner-model" not in response.content
    assert client.get("/activity/not-a-uuid/").status_code == 404

    client.force_login(other_user)  # the owner sees the developer's call, not another tenant's
    _switch(client, team["workspace"])
    assert client.get(f"/activity/{team['devs_call'].call_id}/").status_code == 200
    assert client.get(f"/activity/{foreign.call_id}/").status_code == 404
