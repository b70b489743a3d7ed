"""Overage through the real proxy: quota first, then credits, then 402 with the packs.

Uses the proxy's own test helpers (fake OpenAI-compatible upstream, plan shaping)."""

import pytest
from rest_framework.test import APIClient

from credits.models import CreditAccount, CreditHold, EndpointCost, LedgerEntry
from credits.services import credit_purchase_fulfil
from credits.tests.factories import seed_catalogue
from proxy.catalog import proxy_catalog_seed
from proxy.router import router_reseed
from proxy.selectors import catalog_invalidate

proxy_factories = pytest.importorskip("proxy.tests.factories")
fakeupstream = pytest.importorskip("proxy.tests.fakeupstream")

# The calls share this month's token quota: a month may not end between them.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("midday")]

URL = "/api/proxy/deepseek/chat"
BODY = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 100}


@pytest.fixture
def proxy(settings):
    settings.SANDBOX_PROVIDER_ENABLED = False
    settings.PROXY_ROUTER_SEED = 1234
    settings.SITE_URL = "http://testserver"
    router_reseed(1234)
    catalog_invalidate()
    proxy_catalog_seed()
    seed_catalogue()
    # 3 credits per call + 2 per 1 000 tokens: each 100-token call costs 4 credits.
    EndpointCost.objects.update_or_create(
        endpoint=URL, defaults={"per_call": 3, "per_1000_units": 2, "unit": "tokens", "is_active": True}
    )
    # Room for two calls of (prompt estimate + 100 max tokens) in the monthly token quota.
    proxy_factories.plan_configure(
        weights={"deepseek": 100}, limits={"llm_tokens": 250, "requests": None, "emails": 0}
    )
    proxy_factories.global_key_set("deepseek")
    with fakeupstream.FakeUpstream(prompt_tokens=10, completion_tokens=90) as fake:
        settings.PROVIDER_BASE_URLS = {"deepseek": fake.url_for("/deepseek")}
        yield fake
    catalog_invalidate()


def _buyer(credits: int):
    """A workspace that bought ``credits`` and a client with its owner's proxy key."""
    user, plaintext = proxy_factories.key_for()
    workspace = user.personal_workspace
    credit_purchase_fulfil(
        session={
            "id": f"cs_overage_{workspace.pk}",
            "payment_status": "paid",
            "metadata": {"pack": "pack_100", "credits": str(credits), "workspace_id": str(workspace.pk)},
        }
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return workspace, client


def test_quota_then_credits_then_402_with_upsell(proxy):
    workspace, client = _buyer(10)

    for _ in range(2):  # inside the plan's quota: no credits used
        assert client.post(URL, BODY, format="json").status_code == 200
    assert CreditAccount.objects.get(workspace=workspace).balance == 10

    for expected_balance in (6, 2):  # quota exhausted: paid in credits
        response = client.post(URL, BODY, format="json")
        assert response.status_code == 200, response.content
        assert CreditAccount.objects.get(workspace=workspace).balance == expected_balance

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "insufficient_credits"
    assert (error["balance"], error["cost"]) == (2, 4)
    assert error["buyUrl"] == "http://testserver/credits/"
    assert [p["id"] for p in error["packs"]] == ["pack_100", "pack_500", "pack_1000"]
    consumed = LedgerEntry.objects.filter(workspace=workspace, kind="consume")
    assert list(consumed.values_list("amount", "endpoint")) == [(-4, URL), (-4, URL)]
    account = CreditAccount.objects.get(workspace=workspace)
    assert account.held == 0 and not CreditHold.objects.filter(status="held").exists()


def test_upstream_failure_releases_the_credit_hold(proxy):
    workspace, client = _buyer(10)
    for _ in range(2):
        client.post(URL, BODY, format="json")
    proxy.mode = "500"

    response = client.post(URL, BODY, format="json")

    assert response.status_code >= 500
    account = CreditAccount.objects.get(workspace=workspace)
    assert (account.balance, account.held) == (10, 0)
    assert not LedgerEntry.objects.filter(workspace=workspace, kind="consume").exists()
    assert CreditHold.objects.get(workspace=workspace).status == "released"
