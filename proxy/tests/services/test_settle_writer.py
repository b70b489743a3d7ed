"""The fast lane's grouped settle writer (``proxy.call.settle._SettleWriter``).

Quota-funded successes that settle while a statement is in flight are written together in ONE
statement (group commit): events, rollups summed per (workspace, provider, day), the day's spend and
the quota settle (each hold settled, each counter moved once by the sum). A grouped statement
that fails is retried call by call, so one bad call cannot fail the others.

Each test runs its calls on its own event loop (``asyncio.run``) and
closes that loop's pool and Redis client (``fast_lane_close``) before the loop ends. Statements
are counted by wrapping the ``db_fetch`` the writer calls (only the writer uses
``proxy.call.settle.db_fetch``; the reserve runs through billing's own import).
"""

import asyncio
import uuid
from decimal import Decimal

import psycopg
import pytest
from django.utils import timezone

from billing.models import QuotaReservation, UsageCounter
from billing.selectors import plan_for_workspace_get
from core.fastio import fast_lane_close
from proxy.call import prepare, settle
from proxy.call.settle import CallRecord, cost_usd_get, usage_event_build
from proxy.models import DailySpend, UsageDailyRollup, UsageEvent

from ..factories import UserFactory, global_key_set, plan_configure

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

URL = "/api/proxy/v1/chat/completions"
PROMPT_TOKENS = 10
MAX_TOKENS = 50


@pytest.fixture
def fast_lane(midday, settings, catalog):
    """The fast lane on, every call routed to openrouter on an operator key (so each call costs
    the operator something and the day's spend moves)."""
    settings.PROXY_QUOTA_BATCH = 0  # each call reserves alone: the books are read right after
    plan_configure(weights={"openrouter": 100})
    global_key_set("openrouter")


@pytest.fixture
def statements(monkeypatch):
    """Events per statement the writer ran (one entry per ``db_fetch`` call, committed or not)."""
    sizes: list[int] = []
    real = settle.db_fetch

    async def counting(sql, params=(), **kwargs):
        sizes.append(-1)  # until it returns: a statement that raised stays -1
        index = len(sizes) - 1
        rows = await real(sql, params, **kwargs)
        sizes[index] = sum(1 for row in rows if row[0] == "e")
        return rows

    monkeypatch.setattr(settle, "db_fetch", counting)
    return sizes


def _run(main):
    """Run ``main()`` on a fresh loop, closing the fast lane's pool on that loop at the end."""

    async def wrapped():
        try:
            return await main()
        finally:
            await fast_lane_close()

    return asyncio.run(wrapped())


async def _prepare(workspace, plan):
    return await prepare.proxy_call_aprepare(
        workspace=workspace,
        provider="openrouter",
        endpoint=URL,
        requested_model="gpt-4o",
        prompt_tokens=PROMPT_TOKENS,
        max_tokens=MAX_TOKENS,
        meters={"requests": 1, "llm_tokens": PROMPT_TOKENS + MAX_TOKENS},
        plan=plan,
    )


def _record(workspace, *, completion: int, **kwargs) -> CallRecord:
    return CallRecord(
        workspace_id=workspace.pk,
        api_key_id=None,
        service="router",
        endpoint=URL,
        status_code=200,
        model="gpt-4o",
        provider="openrouter",
        prompt_tokens=PROMPT_TOKENS,
        completion_tokens=completion,
        **kwargs,
    )


async def _settle(prepared, record, workspace):
    return await settle.settle_success_fast(
        prepared=prepared, record=record, workspace=workspace, quota_meter=None
    )


def _counters(workspace) -> dict[str, tuple[int, int]]:
    return {c.meter: (c.used, c.reserved) for c in UsageCounter.objects.filter(workspace=workspace)}


def _held(workspace) -> list:
    return list(QuotaReservation.objects.filter(workspace=workspace, status=QuotaReservation.Status.HELD))


def _rollup(workspace) -> tuple:
    return (
        UsageDailyRollup.objects.filter(workspace=workspace)
        .values_list("provider", "requests", "tokens", "cost_usd", "errors", "fallbacks")
        .get()
    )


def _cost(prepared, completion: int) -> Decimal:
    return cost_usd_get(price=prepared.price, prompt_tokens=PROMPT_TOKENS, completion_tokens=completion)


def _assert_books(workspace, calls: list[tuple]) -> None:
    """``calls``: (prepared, completion tokens) of every call of ``workspace`` that settled."""
    tokens = [PROMPT_TOKENS + completion for _prepared, completion in calls]
    costs = [_cost(prepared, completion) for prepared, completion in calls]
    events = {
        call_id: (total, cost)
        for call_id, total, cost in UsageEvent.objects.filter(workspace=workspace).values_list(
            "call_id", "total_tokens", "cost_usd"
        )
    }
    assert events == {
        prepared.call_id: (total, cost)
        for (prepared, _c), total, cost in zip(calls, tokens, costs, strict=True)
    }
    assert _counters(workspace) == {"llm_tokens": (sum(tokens), 0), "requests": (len(calls), 0)}
    assert _held(workspace) == []
    assert _rollup(workspace) == ("openrouter", len(calls), sum(tokens), sum(costs), 0, 0)


def test_concurrent_settles_of_one_workspace_share_statements_and_keep_exact_books(fast_lane, statements):
    workspace = UserFactory().personal_workspace
    plan = plan_for_workspace_get(workspace=workspace)
    completions = [i + 1 for i in range(20)]  # every call its own token count

    async def main():
        prepared = [await _prepare(workspace, plan) for _ in completions]
        statements.clear()
        results = await asyncio.gather(
            *(
                _settle(p, _record(workspace, completion=c), workspace)
                for p, c in zip(prepared, completions, strict=True)
            )
        )
        return prepared, results

    prepared, results = _run(main)

    assert all(result is not None for result in results)  # each settled on the fast lane
    assert sum(statements) == len(completions)
    assert len(statements) < len(completions), statements
    assert max(statements) > 1, statements
    calls = list(zip(prepared, completions, strict=True))
    _assert_books(workspace, calls)
    # Each caller got its own event back, with the id the database gave it.
    assert [event.pk for event, _block in results] == [
        UsageEvent.objects.get(call_id=p.call_id).pk for p in prepared
    ]
    assert DailySpend.objects.get().spent_usd == sum(_cost(p, c) for p, c in calls)


def test_two_workspaces_in_one_group_each_get_exactly_their_own_calls(fast_lane, statements):
    alice, bob = UserFactory().personal_workspace, UserFactory().personal_workspace
    plans = {ws.pk: plan_for_workspace_get(workspace=ws) for ws in (alice, bob)}
    # Interleaved: alice's calls use 1..8 completion tokens, bob's 31..38.
    wanted = [(workspace, base + i) for i in range(1, 9) for workspace, base in ((alice, 0), (bob, 30))]

    async def main():
        prepared = [await _prepare(workspace, plans[workspace.pk]) for workspace, _c in wanted]
        statements.clear()
        await asyncio.gather(
            *(
                _settle(p, _record(workspace, completion=c), workspace)
                for p, (workspace, c) in zip(prepared, wanted, strict=True)
            )
        )
        return prepared

    prepared = _run(main)

    assert sum(statements) == len(wanted)
    assert len(statements) < len(wanted), statements
    assert max(statements) > 1, statements
    calls = list(zip(prepared, wanted, strict=True))
    for workspace in (alice, bob):
        _assert_books(workspace, [(p, c) for p, (owner, c) in calls if owner == workspace])
    assert DailySpend.objects.get().spent_usd == sum(_cost(p, c) for p, (_u, c) in calls)


def test_one_bad_call_does_not_fail_the_others_in_its_group(fast_lane, statements, caplog):
    workspace = UserFactory().personal_workspace
    plan = plan_for_workspace_get(workspace=workspace)
    completions = [i + 1 for i in range(6)]
    bad = 2  # its event has a negative latency: PostgreSQL refuses it (latency_ms >= 0)

    async def main():
        prepared = [await _prepare(workspace, plan) for _ in completions]
        statements.clear()
        results = await asyncio.gather(
            *(
                _settle(p, _record(workspace, completion=c, latency_ms=-1 if i == bad else 5), workspace)
                for i, (p, c) in enumerate(zip(prepared, completions, strict=True))
            ),
            return_exceptions=True,
        )
        return prepared, results

    prepared, results = _run(main)

    assert isinstance(results[bad], psycopg.errors.CheckViolation), results[bad]
    assert all(isinstance(r, tuple) for i, r in enumerate(results) if i != bad), results
    # The grouped statement failed as a whole, then each call was written alone.
    assert statements == [-1] + [1] * bad + [-1] + [1] * (len(completions) - bad - 1)
    # The slow retry is on the record, without the failed values.
    retried = [r for r in caplog.records if r.getMessage().startswith("grouped settle failed")]
    assert [(r.getMessage(), r.error) for r in retried] == [
        (f"grouped settle failed; settling its {len(completions)} calls one by one", "CheckViolation")
    ]
    good = [(p, c) for i, (p, c) in enumerate(zip(prepared, completions, strict=True)) if i != bad]
    tokens = sum(PROMPT_TOKENS + c for _p, c in good)
    assert _counters(workspace) == {
        "llm_tokens": (tokens, PROMPT_TOKENS + MAX_TOKENS),  # the bad call's hold is still held
        "requests": (len(good), 1),
    }
    assert {r.pk for r in _held(workspace)} == {r.pk for r in prepared[bad].funding.reservations.values()}
    assert set(UsageEvent.objects.filter(workspace=workspace).values_list("call_id", flat=True)) == {
        p.call_id for p, _c in good
    }
    costs = sum(_cost(p, c) for p, c in good)
    assert _rollup(workspace) == ("openrouter", len(good), tokens, costs, 0, 0)
    assert DailySpend.objects.get().spent_usd == costs


def test_a_call_settled_twice_is_charged_once(fast_lane, statements):
    workspace = UserFactory().personal_workspace
    plan = plan_for_workspace_get(workspace=workspace)

    async def main():
        prepared = await _prepare(workspace, plan)
        statements.clear()
        # Twice in one group, then once more after it committed.
        together = await asyncio.gather(
            _settle(prepared, _record(workspace, completion=7), workspace),
            _settle(prepared, _record(workspace, completion=7), workspace),
            return_exceptions=True,
        )
        try:
            await _settle(prepared, _record(workspace, completion=7), workspace)
        except psycopg.errors.UniqueViolation as exc:
            again = exc
        else:
            again = None
        return prepared, together, again

    prepared, together, again = _run(main)

    assert sorted(type(r).__name__ for r in together) == ["UniqueViolation", "tuple"], together
    assert again is not None  # the event's call_id is the settle's idempotency key
    # Grouped (refused), each alone (first commits, second refused), then the late one (refused).
    assert statements == [-1, 1, -1, -1]
    _assert_books(workspace, [(prepared, 7)])
    assert DailySpend.objects.get().spent_usd == _cost(prepared, 7)


def test_holds_written_twice_move_the_counters_once(fast_lane, statements):
    """The quota side alone: writes (each with its own event) carrying the same holds settle each
    hold once, whether they share a statement or one comes after the other committed: ``used``
    is charged once and ``reserved`` never goes below 0."""
    workspace = UserFactory().personal_workspace
    plan = plan_for_workspace_get(workspace=workspace)

    async def main():
        prepared = await _prepare(workspace, plan)
        writer = settle._settle_writer_get()
        pairs = [(r, 1 if r.meter == "requests" else 30) for r in prepared.funding.reservations.values()]

        def write():
            event = usage_event_build(
                prepared=prepared,
                record=_record(workspace, completion=20),
                cost=Decimal(0),
                now=timezone.now(),
            )
            event.call_id = uuid.uuid4()
            return writer.write(event=event, spend_day=None, pairs=pairs)

        statements.clear()
        grouped = await asyncio.gather(write(), write())
        later = await write()
        return grouped, later

    grouped, later = _run(main)

    assert statements == [2, 1]
    assert sorted(len(counters) for _event_id, counters in grouped) == [2, 2]  # both see the move
    assert later[1] == []  # nothing was held any more: no counter moved
    assert _counters(workspace) == {"llm_tokens": (30, 0), "requests": (1, 0)}
    assert _held(workspace) == []
