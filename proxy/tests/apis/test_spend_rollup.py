"""The hourly spend rollup (``UsageSpendHourly``): every call's charge lands in it in the same
statement as its event, on every writer (one call's settle, the grouped settle of the fast lane,
the usage generator, the migration's backfill), so the rollup always equals the log summed per
(workspace, UTC hour, key, requested model or endpoint, currency)."""

import asyncio
import importlib
from collections import Counter
from datetime import UTC

import pytest
from django.db import connection
from django.utils import timezone

from accounts.keys import api_key_hash
from accounts.models import ApiKey
from accounts.services import api_key_create
from billing.models import Plan
from billing.selectors import plan_for_workspace_get
from core.fastio import fast_lane_close
from credits.models import EndpointCost
from credits.services import credit_grant
from proxy.call import prepare, settle
from proxy.call.charge import charge_rates_invalidate
from proxy.call.settle import CallRecord
from proxy.models import UsageEvent, UsageSpendHourly
from proxy.services import event_write
from proxy.usage_generator import usage_events_generate

from ..factories import UserFactory, global_key_set, plan_configure

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

URL = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}
UNLIMITED = {"requests": None, "llm_tokens": None, "emails": 0}
FIELDS = ("requests", "errors", "prompt_tokens", "completion_tokens", "charge_credits", "charge_micros")


def _rollup(**filters) -> dict[tuple, tuple]:
    return {
        (row.workspace_id, row.hour, row.api_key_id, row.model, row.charge_currency): tuple(
            getattr(row, name) for name in FIELDS
        )
        for row in UsageSpendHourly.objects.filter(**filters)
    }


def _events_summed(**filters) -> dict[tuple, tuple]:
    """The log summed per rollup row, in Python: what the rollup must hold."""
    sums: dict[tuple, Counter] = {}
    for event in UsageEvent.objects.filter(**filters):
        hour = event.created_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        key = (
            event.workspace_id,
            hour,
            event.api_key_id or 0,
            event.model or event.endpoint,
            event.charge_currency,
        )
        row = sums.setdefault(key, Counter())
        row.update(
            requests=1,
            errors=int(event.status_code >= 400),
            prompt_tokens=event.prompt_tokens,
            completion_tokens=event.completion_tokens,
            charge_credits=event.charge_credits,
            charge_micros=event.charge_micros,
        )
    return {key: tuple(row[name] for name in FIELDS) for key, row in sums.items()}


def _priced(*, credit_price_micros: int, limits: dict | None = None) -> Plan:
    """Each chat call costs 1 + ceil(200 × tokens / 1000) credits, at the plan's price per credit."""
    EndpointCost.objects.update_or_create(
        endpoint=URL,
        defaults={"is_active": True, "per_call": 1, "per_1000_units": 200, "unit": EndpointCost.Unit.TOKENS},
    )
    Plan.objects.filter(code="free").update(credit_price_micros=credit_price_micros)
    plan = plan_configure(weights={"openrouter": 100}, limits=limits or UNLIMITED)
    charge_rates_invalidate()
    return plan


@pytest.fixture
def routed(midday, caller, fake_upstream, monkeypatch, settings):
    monkeypatch.setattr(prepare, "_budget_refused_at", {})
    settings.PROXY_QUOTA_BATCH = 0
    global_key_set("openrouter")
    charge_rates_invalidate()
    yield caller
    charge_rates_invalidate()


def test_calls_through_the_proxy_land_in_the_hourly_rollup_with_their_charge(routed, fake_upstream):
    user, plaintext, client = routed
    workspace = user.personal_workspace
    _priced(credit_price_micros=12_500)  # 0.0125 EUR a credit
    first = ApiKey.objects.get(key_hash=api_key_hash(plaintext))
    second, second_plaintext = api_key_create(workspace=workspace, created_by=user, name="second")

    assert client.post(URL, BODY, format="json").status_code == 200
    assert client.post(URL, BODY, format="json").status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {second_plaintext}")
    assert client.post(URL, {**BODY, "model": "gpt-4o-mini"}, format="json").status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    fake_upstream.mode = "500"
    assert client.post(URL, BODY, format="json").status_code == 502

    rollup = _rollup(workspace=workspace)
    assert rollup == _events_summed(workspace=workspace)
    hour = timezone.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    assert {key[1] for key in rollup} == {hour}
    # 25 tokens a call: 6 credits, 0.075 EUR; the failed call counts, charged nothing.
    assert rollup[(workspace.pk, hour, second.pk, "gpt-4o-mini", "eur")] == (1, 0, 10, 15, 6, 75_000)
    first_rows = [values for key, values in rollup.items() if key[2:4] == (first.pk, "gpt-4o")]
    assert tuple(map(sum, zip(*first_rows, strict=True))) == (3, 1, 20, 30, 12, 150_000)


def test_a_credit_paid_call_lands_in_the_hourly_rollup(routed):
    user, plaintext, client = routed
    workspace = user.personal_workspace
    _priced(credit_price_micros=10_000, limits={"requests": None, "llm_tokens": 10, "emails": 0})
    credit_grant(workspace=workspace, amount=100, admin_user=UserFactory(is_staff=True))

    assert client.post(URL, BODY, format="json").status_code == 200

    key = ApiKey.objects.get(key_hash=api_key_hash(plaintext))
    ((row_key, values),) = _rollup(workspace=workspace).items()
    assert row_key[2:] == (key.pk, "gpt-4o", "eur")
    assert values == (1, 0, 10, 15, 6, 60_000)


def test_a_call_without_a_model_or_key_is_rolled_up_under_its_endpoint(db, catalog):
    workspace = UserFactory().personal_workspace
    now = timezone.now()
    event = UsageEvent(
        workspace_id=workspace.pk,
        service="instantly",
        endpoint="/api/proxy/email/send",
        emails=1,
        charge_credits=3,
        charge_micros=30_000,
        charge_currency="usd",
        status_code=200,
        created_at=now,
    )

    event_write(event=event, rollup_provider="instantly", is_error=False, spend_day=None, now=now)

    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    assert _rollup(workspace=workspace) == {
        (workspace.pk, hour, 0, "/api/proxy/email/send", "usd"): (1, 0, 0, 0, 3, 30_000)
    }


# --- the grouped settle (fast lane) -------------------------------------------------------------


def _run(main):
    async def wrapped():
        try:
            return await main()
        finally:
            await fast_lane_close()

    return asyncio.run(wrapped())


def test_the_grouped_settle_adds_each_calls_charge_to_its_row(
    midday, settings, free_plan, catalog, monkeypatch
):
    settings.PROXY_QUOTA_BATCH = 0
    global_key_set("openrouter")
    _priced(credit_price_micros=10_000)
    user = UserFactory()
    workspace = user.personal_workspace
    keys = [api_key_create(workspace=workspace, created_by=user, name=f"k{i}")[0].pk for i in range(2)]
    plan = plan_for_workspace_get(workspace=workspace)
    statements: list[int] = []
    real = settle.db_fetch

    async def counting(sql, params=(), **kwargs):
        rows = await real(sql, params, **kwargs)
        statements.append(sum(1 for row in rows if row[0] == "e"))
        return rows

    monkeypatch.setattr(settle, "db_fetch", counting)
    calls = [(keys[i % 2], "gpt-4o" if i % 3 else "gpt-4o-mini", 5 + i) for i in range(12)]

    async def main():
        prepared = [
            await prepare.proxy_call_aprepare(
                workspace=workspace,
                provider="openrouter",
                endpoint=URL,
                requested_model=model,
                prompt_tokens=10,
                max_tokens=50,
                meters={"requests": 1, "llm_tokens": 60},
                plan=plan,
            )
            for _key, model, _c in calls
        ]
        records = [
            CallRecord(
                workspace_id=workspace.pk,
                api_key_id=key,
                service="router",
                endpoint=URL,
                status_code=200,
                model=model,
                provider="openrouter",
                prompt_tokens=10,
                completion_tokens=completion,
            )
            for key, model, completion in calls
        ]
        return await asyncio.gather(
            *(
                settle.settle_success_fast(prepared=p, record=r, workspace=workspace, quota_meter=None)
                for p, r in zip(prepared, records, strict=True)
            )
        )

    results = _run(main)

    assert all(result is not None for result in results)  # every call settled on the fast lane
    assert max(statements) > 1, statements  # and some shared a statement
    rollup = _rollup(workspace=workspace)
    assert rollup == _events_summed(workspace=workspace)
    assert len(rollup) == 4  # 2 keys × 2 models, one hour, one currency
    assert sum(values[0] for values in rollup.values()) == len(calls)
    assert sum(values[4] for values in rollup.values()) == sum(
        UsageEvent.objects.filter(workspace=workspace).values_list("charge_credits", flat=True)
    )
    assert all(values[5] == values[4] * 10_000 for values in rollup.values()), rollup


# --- the other writers ---------------------------------------------------------------------------


def test_generated_usage_comes_with_its_hourly_rows(db, catalog):
    result = usage_events_generate(count=300, users=3, days=2, seed=7)

    workspaces = {
        "workspace_id__in": list(UsageEvent.objects.values_list("workspace_id", flat=True).distinct())
    }
    rollup = _rollup(**workspaces)
    assert sum(values[0] for values in rollup.values()) == result.events
    assert rollup == _events_summed(**workspaces)


def test_the_migration_backfill_rebuilds_the_rollup_from_the_log(db, catalog):
    usage_events_generate(count=120, users=2, days=3, seed=3)
    expected = _rollup()
    UsageSpendHourly.objects.all().delete()
    backfill = importlib.import_module("proxy.migrations.0007_usage_spend_hourly").BACKFILL_SQL

    with connection.cursor() as cursor:
        cursor.execute(backfill)

    assert _rollup() == expected == _events_summed()
