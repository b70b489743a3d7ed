"""The credits charged per daily rollup row (``UsageDailyRollup.charge_credits``, what the
operator dashboard splits revenue between providers by): every call adds its event's
``charge_credits`` in the statement that writes the event, on one call's settle and on the fast
lane's grouped settle; the migration fills it from the existing log."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from billing.models import Plan
from billing.selectors import plan_for_workspace_get
from core.fastio import fast_lane_close
from credits.models import EndpointCost
from credits.services import credit_grant
from proxy.call import prepare, settle
from proxy.call.charge import charge_rates_invalidate
from proxy.call.settle import CallRecord
from proxy.models import UsageDailyRollup, UsageEvent

from ..factories import UserFactory, global_key_set, plan_configure

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

URL = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}
UNLIMITED = {"requests": None, "llm_tokens": None, "emails": 0}


def _priced(*, limits: dict | None = None) -> Plan:
    """Each chat call costs 1 + ceil(200 × tokens / 1000) credits."""
    EndpointCost.objects.update_or_create(
        endpoint=URL,
        defaults={"is_active": True, "per_call": 1, "per_1000_units": 200, "unit": EndpointCost.Unit.TOKENS},
    )
    Plan.objects.filter(code="free").update(credit_price_micros=10_000)
    plan = plan_configure(weights={"openrouter": 100}, limits=limits or UNLIMITED)
    charge_rates_invalidate()
    return plan


def _charged(workspace) -> dict[str, int]:
    """Credits charged per provider on the workspace's rollup rows (one day: the test's)."""
    return dict(
        UsageDailyRollup.objects.filter(workspace=workspace).values_list("provider", "charge_credits")
    )


def _event_credits(workspace) -> int:
    return sum(UsageEvent.objects.filter(workspace=workspace).values_list("charge_credits", flat=True))


@pytest.fixture
def routed(midday, caller, fake_upstream, monkeypatch, settings):
    monkeypatch.setattr(prepare, "_budget_refused_at", {})
    settings.PROXY_QUOTA_BATCH = 0
    global_key_set("openrouter")
    charge_rates_invalidate()
    yield caller
    charge_rates_invalidate()


def test_calls_through_the_proxy_add_their_credits_to_the_daily_rollup(routed, fake_upstream):
    user, _plaintext, client = routed
    workspace = user.personal_workspace
    _priced()

    assert client.post(URL, BODY, format="json").status_code == 200
    assert client.post(URL, {**BODY, "model": "gpt-4o-mini"}, format="json").status_code == 200
    fake_upstream.mode = "500"
    assert client.post(URL, BODY, format="json").status_code == 502

    # 25 tokens a call: 1 + ceil(200 × 25 / 1000) = 6 credits; the failed call is charged nothing.
    assert _charged(workspace) == {"openrouter": 12}
    assert _event_credits(workspace) == 12
    assert UsageDailyRollup.objects.get(workspace=workspace).requests == 3


def test_a_call_paid_with_credits_counts_too(routed):
    user, _plaintext, client = routed
    workspace = user.personal_workspace
    _priced(limits={"requests": None, "llm_tokens": 10, "emails": 0})  # the quota cannot pay
    credit_grant(workspace=workspace, amount=100, admin_user=UserFactory(is_staff=True))

    assert client.post(URL, BODY, format="json").status_code == 200

    assert _charged(workspace) == {"openrouter": 6}


def test_the_grouped_settle_adds_the_sum_of_its_calls_credits(
    midday, settings, free_plan, catalog, monkeypatch
):
    settings.PROXY_QUOTA_BATCH = 0
    global_key_set("openrouter")
    _priced()
    workspace = UserFactory().personal_workspace
    plan = plan_for_workspace_get(workspace=workspace)
    statements: list[int] = []
    real = settle.db_fetch

    async def counting(sql, params=(), **kwargs):
        rows = await real(sql, params, **kwargs)
        statements.append(sum(1 for row in rows if row[0] == "e"))
        return rows

    monkeypatch.setattr(settle, "db_fetch", counting)
    completions = [5, 6, 7, 8, 9, 10]  # 15…20 tokens: 4, 5, 5, 5, 5, 5 credits = 29

    async def main():
        try:
            prepared = [
                await prepare.proxy_call_aprepare(
                    workspace=workspace,
                    provider="openrouter",
                    endpoint=URL,
                    requested_model="gpt-4o",
                    prompt_tokens=10,
                    max_tokens=50,
                    meters={"requests": 1, "llm_tokens": 60},
                    plan=plan,
                )
                for _ in completions
            ]
            records = [
                CallRecord(
                    workspace_id=workspace.pk,
                    api_key_id=None,
                    service="router",
                    endpoint=URL,
                    status_code=200,
                    model="gpt-4o",
                    provider="openrouter",
                    prompt_tokens=10,
                    completion_tokens=completion,
                )
                for completion in completions
            ]
            return await asyncio.gather(
                *(
                    settle.settle_success_fast(prepared=p, record=r, workspace=workspace, quota_meter=None)
                    for p, r in zip(prepared, records, strict=True)
                )
            )
        finally:
            await fast_lane_close()

    results = asyncio.run(main())

    assert all(result is not None for result in results)  # every call settled on the fast lane
    assert max(statements) > 1, statements  # and some shared a statement
    assert _charged(workspace) == {"openrouter": 29}
    assert _event_credits(workspace) == 29


# --- the migration's backfill -------------------------------------------------------------------

BEFORE = [("proxy", "0007_usage_spend_hourly")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def _latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


@pytest.fixture
def migration_rollback():
    """Leave the schema as every other test expects it."""
    yield
    _migrate(_latest())


def _columns(table: str) -> set[str]:
    with connection.cursor() as cursor:
        return {c.name for c in connection.introspection.get_table_description(cursor, table)}


def test_the_migration_fills_each_row_from_its_days_events(catalog, migration_rollback):
    a, b = UserFactory().personal_workspace, UserFactory().personal_workspace
    old = _migrate(BEFORE)
    assert "charge_credits" not in _columns("proxy_usagedailyrollup")
    Event, Rollup = old.get_model("proxy", "UsageEvent"), old.get_model("proxy", "UsageDailyRollup")
    today = timezone.now().date()
    midnight = datetime.combine(today, datetime.min.time(), tzinfo=UTC)
    yesterday = today - timedelta(days=1)

    def event(workspace, provider, credits, at):
        Event.objects.create(
            workspace_id=workspace.pk, service="router", endpoint=URL, provider=provider,
            charge_credits=credits, status_code=200, created_at=at,
        )  # fmt: skip

    event(a, "groq", 5, midnight + timedelta(minutes=30))
    event(a, "groq", 7, midnight + timedelta(hours=20))
    event(a, "groq", 2, midnight - timedelta(minutes=30))  # 23:30 UTC yesterday: yesterday's row
    event(a, "", 3, midnight + timedelta(hours=1))  # no provider: rolled up under "none"
    event(b, "openai", 0, midnight + timedelta(hours=2))
    for workspace, provider, day in [
        (a, "groq", today),
        (a, "groq", yesterday),
        (a, "none", today),
        (b, "openai", today),
        (b, "mistral", today),  # no events left behind it
    ]:
        Rollup.objects.create(workspace_id=workspace.pk, provider=provider, day=day, requests=1)

    _migrate(_latest())

    rows = {
        (row.workspace_id, row.provider, row.day): row.charge_credits
        for row in UsageDailyRollup.objects.all()
    }
    assert rows == {
        (a.pk, "groq", today): 12,
        (a.pk, "groq", yesterday): 2,
        (a.pk, "none", today): 3,
        (b.pk, "openai", today): 0,
        (b.pk, "mistral", today): 0,
    }

    _migrate(BEFORE)  # the reverse drops the column, nothing else

    assert "charge_credits" not in _columns("proxy_usagedailyrollup")
    assert old.get_model("proxy", "UsageDailyRollup").objects.count() == 5
