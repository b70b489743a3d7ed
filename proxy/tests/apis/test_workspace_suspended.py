"""A suspended workspace's keys answer ``403 workspace_suspended`` from their next call — on the
ORM gate and on the fast gate that reads the cached identity — with nothing held, charged or
sent upstream; reinstating it lets them through again (PostgreSQL, Redis, the real async view,
a fake provider)."""

import pytest

from accounts.services import api_key_create
from accounts.services.suspension import workspace_reinstate, workspace_suspend
from accounts.tests.factories import UserFactory
from billing.models import QuotaReservation
from proxy.call import prepare
from proxy.models import UsageEvent

from ..factories import global_key_set, plan_configure

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

URL = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}


@pytest.fixture
def routed(midday, caller, fake_upstream, monkeypatch, settings):
    monkeypatch.setattr(prepare, "_budget_refused_at", {})
    settings.PROXY_QUOTA_BATCH = 0
    global_key_set("openrouter")
    plan_configure(weights={"openrouter": 100})
    return caller


def test_a_suspended_workspaces_keys_are_refused_until_it_is_reinstated(routed, fake_upstream):
    user, _plaintext, client = routed
    workspace = user.personal_workspace
    operator = UserFactory(is_staff=True)
    assert client.post(URL, BODY, format="json").status_code == 200  # identity cached, gate learnt

    workspace_suspend(workspace=workspace, reason="chargeback under review", actor=operator)
    refused = client.post(URL, BODY, format="json")
    again = client.post(URL, BODY, format="json")  # the cached (suspended) identity

    for response in (refused, again):
        assert response.status_code == 403
        error = response.json()["error"]
        assert (error["code"], error["type"]) == ("workspace_suspended", "permission_error")
        assert "chargeback" not in error["message"]  # the operator's reason stays internal
    assert len(fake_upstream.requests) == 1
    assert UsageEvent.objects.count() == 1
    assert not QuotaReservation.objects.filter(status="held").exists()

    workspace_reinstate(workspace=workspace, actor=operator)
    assert client.post(URL, BODY, format="json").status_code == 200


def test_a_key_first_used_while_suspended_is_refused_too(routed, fake_upstream):
    user, _plaintext, client = routed
    workspace = user.personal_workspace
    workspace_suspend(workspace=workspace, reason="abuse", actor=UserFactory(is_staff=True))
    _key, fresh = api_key_create(workspace=workspace, created_by=user, name="new")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {fresh}")

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "workspace_suspended"
    assert fake_upstream.requests == []
