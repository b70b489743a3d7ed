"""Quota exhausted → the call is paid in credits (credits app seam in proxy/call/funding.py)."""

import pytest

from billing.models import UsageCounter
from credits.models import CreditAccount, EndpointCost
from credits.selectors import credit_balance_get
from credits.services import credit_grant
from proxy.models import UsageEvent

from ..factories import UserFactory, global_key_set, plan_configure

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/proxy/deepseek/chat"
BODY = {"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}


@pytest.fixture
def exhausted(caller, fake_upstream):
    user, _plaintext, client = caller
    plan_configure(limits={"llm_tokens": 10, "requests": None, "emails": 0})
    global_key_set("deepseek")
    EndpointCost.objects.update_or_create(
        endpoint="/api/proxy/deepseek/chat",
        defaults={"per_call": 1, "per_1000_units": 2, "unit": EndpointCost.Unit.TOKENS, "is_active": True},
    )
    return user, client


def test_call_is_paid_in_credits_when_the_quota_is_exhausted(exhausted):
    user, client = exhausted
    workspace = user.personal_workspace
    credit_grant(workspace=workspace, amount=100, admin_user=UserFactory(is_staff=True))

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 200, response.content
    event = UsageEvent.objects.get()
    # 1 per call + ceil(2 × 25 / 1000) for the 25 tokens actually used.
    assert event.credits_charged == 2
    balance = credit_balance_get(workspace=workspace)
    assert (balance.balance, balance.available) == (98, 98)
    assert UsageCounter.objects.get(workspace=workspace, meter="llm_tokens").used == 0


def test_upstream_failure_releases_the_credit_hold(exhausted, fake_upstream):
    user, client = exhausted
    credit_grant(workspace=user.personal_workspace, amount=100, admin_user=UserFactory(is_staff=True))
    fake_upstream.mode = "500"

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 502
    balance = credit_balance_get(workspace=user.personal_workspace)
    assert (balance.balance, balance.available) == (100, 100)


def test_no_credits_never_bought_is_429_with_packs(exhausted):
    _user, client = exhausted

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["balance"] == 0 and error["cost"] >= 1
    assert "buyUrl" in error and "packs" in error


def test_credits_bought_but_too_few_is_402(exhausted):
    user, client = exhausted
    workspace = user.personal_workspace
    CreditAccount.objects.get_or_create(workspace=workspace)
    CreditAccount.objects.filter(workspace=workspace).update(first_purchase_at="2026-01-01T00:00:00Z")

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "insufficient_credits"
    assert error["quota"]["limit"] == 10
    assert {"balance", "cost", "packs", "buyUrl"} <= set(error)
