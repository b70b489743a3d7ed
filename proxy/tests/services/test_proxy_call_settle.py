from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync

from billing.models import UsageCounter
from billing.selectors import plan_for_workspace_get
from core.fastio import transient_loop
from core.lifecycle import shutdown_run
from proxy.budget import budget_spent_get, usd_to_micro
from proxy.call.prepare import proxy_call_aprepare
from proxy.call.settle import CallRecord, proxy_call_settle
from proxy.models import DailySpend, UsageDailyRollup, UsageEvent

from ..factories import UserFactory, global_key_set, plan_configure

pytestmark = pytest.mark.django_db(transaction=True)  # the call path uses its own connections


@pytest.fixture
def workspace(catalog):
    plan_configure(weights={"openrouter": 100})
    global_key_set("openrouter")
    return UserFactory().personal_workspace


def _prepare(workspace, now=None):
    async def prepare():
        token = transient_loop.set(True)
        try:
            return await proxy_call_aprepare(
                now=now,
                workspace=workspace,
                provider="openrouter",
                endpoint="/api/proxy/v1/chat/completions",
                requested_model="gpt-4o",
                prompt_tokens=10,
                max_tokens=50,
                meters={"requests": 1, "llm_tokens": 60},
                plan=plan,
            )
        finally:
            await shutdown_run()
            transient_loop.reset(token)

    plan = plan_for_workspace_get(workspace=workspace)
    return async_to_sync(prepare)()


def _record(workspace, status=200, **kwargs):
    return CallRecord(
        workspace_id=workspace.pk,
        api_key_id=None,
        service="router",
        endpoint="/e",
        status_code=status,
        **kwargs,
    )


def test_rollup_and_daily_spend_accumulate_across_calls(midday, workspace):
    for _ in range(2):
        prepared = _prepare(workspace)
        proxy_call_settle(
            prepared=prepared, record=_record(workspace, prompt_tokens=10, completion_tokens=15)
        )
    proxy_call_settle(
        prepared=_prepare(workspace), record=_record(workspace, status=502, error_code="upstream_error")
    )

    rollup = UsageDailyRollup.objects.get(workspace=workspace, provider="openrouter")
    assert (rollup.requests, rollup.tokens, rollup.errors) == (3, 50, 1)
    # 10 × 2.50 + 15 × 10.00 per million = 0.000175 per successful call.
    assert rollup.cost_usd == Decimal("0.000350")
    assert DailySpend.objects.get().spent_usd == Decimal("0.000350")
    assert UsageEvent.objects.count() == 3


def test_prepare_reserves_the_maximum_and_settle_charges_the_actual(workspace):
    prepared = _prepare(workspace)
    assert prepared.upstream_model == "openai/gpt-4o"
    assert prepared.budget_micro == 525  # 10 × 2.5 + 50 × 10 micro-USD
    assert UsageCounter.objects.get(workspace=workspace, meter="llm_tokens").reserved == 60

    proxy_call_settle(prepared=prepared, record=_record(workspace, prompt_tokens=10, completion_tokens=15))

    counter = UsageCounter.objects.get(workspace=workspace, meter="llm_tokens")
    assert (counter.used, counter.reserved) == (25, 0)


def test_a_call_that_crosses_midnight_stays_on_the_day_it_was_admitted(workspace):
    """Its budget hold was taken on the first day, so its event, rollup and spend are too:
    otherwise each ledger would put the same cost on a different day."""
    admitted = datetime(2026, 11, 21, 23, 59, 59, 900_000, tzinfo=UTC)
    day, next_day = admitted.date(), admitted.date() + timedelta(days=1)
    prepared = _prepare(workspace, now=admitted)

    event = proxy_call_settle(
        prepared=prepared,
        record=_record(workspace, prompt_tokens=10, completion_tokens=15),
        now=admitted + timedelta(seconds=2),
    )

    event.refresh_from_db()
    assert event.created_at == admitted
    assert list(UsageDailyRollup.objects.values_list("day", "cost_usd")) == [(day, Decimal("0.000175"))]
    assert list(DailySpend.objects.values_list("day", "spent_usd")) == [(day, Decimal("0.000175"))]
    assert budget_spent_get(day=day) == usd_to_micro(Decimal("0.000175"))
    assert budget_spent_get(day=next_day) == 0
