from decimal import Decimal

import pytest

from proxy.models import DailySpend, UsageDailyRollup, UsageEvent
from proxy.services import CallRecord, proxy_call_prepare, proxy_call_settle

from ..factories import UserFactory, global_key_set, plan_configure

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(catalog):
    plan_configure(weights={"openrouter": 100})
    global_key_set("openrouter")
    return UserFactory()


def _prepare(user):
    return proxy_call_prepare(
        user=user,
        provider="openrouter",
        endpoint="/api/proxy/v1/chat/completions",
        requested_model="gpt-4o",
        prompt_tokens=10,
        max_tokens=50,
        meters={"requests": 1, "llm_tokens": 60},
    )


def _record(user, status=200, **kwargs):
    return CallRecord(
        user_id=user.pk, api_key_id=None, service="router", endpoint="/e", status_code=status, **kwargs
    )


def test_rollup_and_daily_spend_accumulate_across_calls(user):
    for _ in range(2):
        prepared = _prepare(user)
        proxy_call_settle(prepared=prepared, record=_record(user, prompt_tokens=10, completion_tokens=15))
    proxy_call_settle(prepared=_prepare(user), record=_record(user, status=502, error_code="upstream_error"))

    rollup = UsageDailyRollup.objects.get(user=user, provider="openrouter")
    assert (rollup.requests, rollup.tokens, rollup.errors) == (3, 50, 1)
    # 10 × 2.50 + 15 × 10.00 per million = 0.000175 per successful call.
    assert rollup.cost_usd == Decimal("0.000350")
    assert DailySpend.objects.get().spent_usd == Decimal("0.000350")
    assert UsageEvent.objects.count() == 3


def test_prepare_reserves_the_maximum_and_settle_charges_the_actual(user):
    from billing.models import UsageCounter

    prepared = _prepare(user)
    assert prepared.upstream_model == "openai/gpt-4o"
    assert prepared.budget_micro == 525  # 10 × 2.5 + 50 × 10 micro-USD
    assert UsageCounter.objects.get(user=user, meter="llm_tokens").reserved == 60

    proxy_call_settle(prepared=prepared, record=_record(user, prompt_tokens=10, completion_tokens=15))

    counter = UsageCounter.objects.get(user=user, meter="llm_tokens")
    assert (counter.used, counter.reserved) == (25, 0)
