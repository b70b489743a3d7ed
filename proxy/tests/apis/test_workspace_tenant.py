"""The tenant of a proxied call is the key's workspace: every member's keys draw on one plan
quota, one credit balance and one usage log, and use the workspace's own provider keys."""

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.services.workspaces import membership_create, workspace_create
from billing.models import UsageCounter
from proxy.models import UsageDailyRollup, UsageEvent

from ..factories import UserFactory, global_key_set, key_for, plan_configure, workspace_key_set

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}


def _client(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


@pytest.fixture
def team(catalog, free_plan):
    """A team workspace: its owner (alice) and a developer (bob), each with a key of their own
    in it. Both also have their personal workspaces."""
    alice, bob = UserFactory(), UserFactory()
    workspace = workspace_create(user=alice, name="Team")
    membership_create(workspace=workspace, user=bob, role="developer", actor=alice, as_operator=False)
    _alice, alice_key = key_for(alice, workspace=workspace)
    _bob, bob_key = key_for(bob, workspace=workspace)
    return workspace, (alice, _client(alice_key)), (bob, _client(bob_key))


def test_two_members_keys_draw_on_one_quota(team, fake_upstream):
    workspace, (alice, alice_client), (bob, bob_client) = team
    plan_configure(weights={"groq": 100}, limits={"llm_tokens": 1_000_000, "emails": 0, "requests": 2})
    global_key_set("groq")

    alice_calls = [alice_client.post(URL, BODY, format="json") for _ in range(2)]
    refused = bob_client.post(URL, BODY, format="json")

    assert [r.status_code for r in alice_calls] == [200, 200], alice_calls[-1].content
    assert refused.status_code == 429, refused.content
    error = refused.json()["error"]
    assert (error["code"], error["meter"]) == ("quota_exceeded", "requests")
    assert (error["quota"]["used"], error["quota"]["limit"]) == (2, 2)
    assert len(fake_upstream.requests) == 2  # bob's call never went upstream
    counters = dict(UsageCounter.objects.filter(workspace=workspace).values_list("meter", "used"))
    assert counters == {"requests": 2, "llm_tokens": 50}
    # Neither member's personal workspace was touched.
    personal = [alice.personal_workspace, bob.personal_workspace]
    assert not UsageCounter.objects.filter(workspace__in=personal).exists()
    assert not UsageEvent.objects.filter(workspace__in=personal).exists()


def test_a_calls_usage_event_is_the_keys_workspace_and_names_the_members_key(team, fake_upstream):
    workspace, (alice, alice_client), (bob, bob_client) = team
    plan_configure(weights={"groq": 100})
    global_key_set("groq")

    assert alice_client.post(URL, BODY, format="json").status_code == 200
    assert bob_client.post(URL, BODY, format="json").status_code == 200

    events = list(UsageEvent.objects.order_by("pk").values_list("workspace_id", "api_key__created_by"))
    assert events == [(workspace.pk, alice.pk), (workspace.pk, bob.pk)]
    rollup = UsageDailyRollup.objects.get()
    assert (rollup.workspace_id, rollup.requests, rollup.tokens) == (workspace.pk, 2, 50)
    # The usage API answers for the workspace: each member sees both members' calls.
    for client in (alice_client, bob_client):
        usage = client.get("/api/proxy/usage").json()
        assert usage["quota"]["deepseek"]["used"] == 50
        assert len(usage["recentUsage"]) == 2


def test_a_members_key_uses_the_workspaces_own_provider_key_not_their_personal_one(team, fake_upstream):
    workspace, (_alice, _alice_client), (bob, bob_client) = team
    plan_configure(weights={"openrouter": 100})
    workspace_key_set(workspace, "openrouter", "sk-team-0123456789")
    workspace_key_set(bob.personal_workspace, "openrouter", "sk-bob-personal-0123456789")
    _bob, personal_key = key_for(bob)

    assert bob_client.post(URL, BODY, format="json").status_code == 200
    assert _client(personal_key).post(URL, BODY, format="json").status_code == 200

    sent = [r["headers"]["Authorization"] for r in fake_upstream.requests]
    assert sent == ["Bearer sk-team-0123456789", "Bearer sk-bob-personal-0123456789"]
    by_workspace = dict(UsageEvent.objects.values_list("workspace_id", "key_source"))
    assert by_workspace == {workspace.pk: "workspace", bob.personal_workspace.pk: "workspace"}
    assert ApiKey.objects.filter(created_by=bob).count() == 2
