"""The proxy's fast lane (``proxy/call/``): the steady hot case of a chat call runs as
coroutines on an async PostgreSQL pool and Redis, with no thread; it must keep the same books
and enforce the same limits as the ORM path.

Served by uvicorn on a loop the ``live_asgi_fast`` fixture owns (the fast lane's pool belongs
to that loop). The first call of a key in a process always takes the ORM gate (it learns the
key's owner); the calls after it are the ones the fast lane serves.
"""

import asyncio
import gc
import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import time_machine
from django.contrib import admin
from django.core.cache import cache
from django.utils import timezone

from accounts.models import ApiKey, InvalidKeyDay, User
from accounts.services import api_key_revoke, api_key_rotate
from billing import quota_pool
from billing.models import QuotaReservation, UsageCounter
from core import fastio
from proxy import dbcall, selectors
from proxy.budget import budget_spent_get, usd_to_micro
from proxy.call import gate, prepare, settle, stream, upstream, view
from proxy.models import DailySpend, RateLimitedDay, UsageDailyRollup, UsageEvent
from proxy.ratelimit import rate_limit_window

from ..factories import global_key_set, plan_configure, workspace_key_set
from ..live import uvicorn_served

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

URL = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}
# The fake provider's usage: 10 prompt + 15 completion tokens (5 chunks when streaming).
TOKENS = 25
STREAM_TOKENS = 15
# gpt-4o through openrouter at the catalogue's price, for those 25 tokens.
OPENROUTER_COST = Decimal("0.000175")

EVENT_FIELDS = (
    "status_code",
    "error_code",
    "service",
    "endpoint",
    "provider",
    "model",
    "upstream_model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "credits_charged",
    "key_source",
    "is_fallback",
    "is_budget_fallback",
    "is_estimated",
)


def _post(base_url: str, key: str, body: dict | None = None) -> httpx.Response:
    return httpx.post(
        base_url + URL, json=body or BODY, headers={"Authorization": f"Bearer {key}"}, timeout=20
    )


def _counters(workspace) -> dict[str, tuple[int, int]]:
    return {c.meter: (c.used, c.reserved) for c in UsageCounter.objects.filter(workspace=workspace)}


def _events(workspace) -> list[tuple]:
    return list(UsageEvent.objects.filter(workspace=workspace).order_by("pk").values_list(*EVENT_FIELDS))


def _held(workspace) -> list[tuple]:
    return list(
        QuotaReservation.objects.filter(workspace=workspace, status="held").values_list("meter", "amount")
    )


def _rollups(workspace) -> list[tuple]:
    return list(
        UsageDailyRollup.objects.filter(workspace=workspace)
        .order_by("provider")
        .values_list("provider", "requests", "tokens", "cost_usd", "errors", "fallbacks")
    )


def _outside_minute_end(margin: float = 10.0) -> None:
    """The rate-limit window is a calendar minute: start a test far enough from its end."""
    if time.time() % 60 > 60 - margin:
        time.sleep(60 - time.time() % 60 + 0.1)


@pytest.fixture
def db_calls(monkeypatch):
    """Names of the functions the proxy sends to a thread (``db_call``), in call order."""
    calls: list[str] = []
    real = dbcall.db_call

    async def counting(fn, /, *args, **kwargs):
        calls.append(getattr(fn, "__qualname__", repr(fn)))
        return await real(fn, *args, **kwargs)

    for module in (gate, prepare, settle, stream, upstream, view):
        monkeypatch.setattr(module, "db_call", counting)
    return calls


@pytest.fixture
def fast(midday, caller, fake_upstream, live_asgi_fast, monkeypatch, settings):
    """(workspace, key, base URL): a user's personal workspace and their key, on a plan routed to
    openrouter (an operator key, so the daily budget is reserved and settled), with groq as the
    fallback."""
    user, plaintext, _client = caller
    monkeypatch.setattr(prepare, "_budget_refused_at", {})  # no refusal remembered from another test
    # Each call reserves alone: these tests read the books right after a call, before a worker's
    # spare reservations would be released (spares: test_steady_calls_take_spare_reservations…).
    settings.PROXY_QUOTA_BATCH = 0
    plan_configure(weights={"openrouter": 100}, fallback_provider="groq")
    global_key_set("openrouter")
    global_key_set("groq")
    return user.personal_workspace, plaintext, live_asgi_fast


# --- Books ------------------------------------------------------------------------------------


def test_the_steady_call_makes_no_thread_hop(fast, db_calls):
    workspace, plaintext, base_url = fast

    first = _post(base_url, plaintext)
    learned = list(db_calls)
    db_calls.clear()
    steady = [_post(base_url, plaintext) for _ in range(3)]

    assert first.status_code == 200, first.text
    assert "gate_orm" in learned, learned  # the ORM gate learnt the key
    assert [r.status_code for r in steady] == [200, 200, 200]
    assert db_calls == []
    assert _counters(workspace) == {"llm_tokens": (4 * TOKENS, 0), "requests": (4, 0)}
    assert _held(workspace) == []


def test_steady_calls_take_spare_reservations_and_the_books_stay_exact(fast, settings, monkeypatch):
    """A worker reserves for its next calls in one statement (``billing.quota_pool``); what the
    caller is told leaves that worker's unused spares out, and idle spares are released."""
    settings.PROXY_QUOTA_BATCH = 4
    settings.PROXY_QUOTA_BATCH_IDLE = 0.5
    workspace, plaintext, base_url = fast
    reserves: list[str] = []
    real = fastio.db_fetch

    async def counting(sql, params=(), **kwargs):
        if "generate_series" in sql:  # the reserve statement, alone or a batch
            reserves.append(sql)
        return await real(sql, params, **kwargs)

    monkeypatch.setattr(fastio, "db_fetch", counting)
    assert _post(base_url, plaintext).status_code == 200  # learns the key, creates the counters
    time.sleep(quota_pool.REFUSAL_MEMORY_SECONDS)  # in case that call's batch was refused
    reserves.clear()

    steady = [_post(base_url, plaintext) for _ in range(5)]

    assert [r.status_code for r in steady] == [200] * 5
    # The first steady call reserves alone (this worker had no call of this workspace in the last
    # second); the second takes a batch: its own reservation and four spares for the rest.
    assert len(reserves) == 2
    for calls, response in enumerate(steady, start=2):
        quota = response.json()["quota"]
        assert (quota["used"], quota["remaining"]) == (calls * TOKENS, 1_000_000 - calls * TOKENS)
    deadline = time.monotonic() + 5
    while _held(workspace) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _held(workspace) == []
    assert _counters(workspace) == {"llm_tokens": (6 * TOKENS, 0), "requests": (6, 0)}
    assert len(_events(workspace)) == 6


def test_a_burst_of_first_calls_learns_the_key_once(fast, db_calls):
    """On a fresh worker the first call of a key takes the ORM gate; the calls that arrive while
    it runs wait for it and then take the fast gate, instead of all queueing for threads."""
    workspace, plaintext, base_url = fast

    responses = _fire(base_url, plaintext, 12)

    assert [r.status_code for r in responses] == [200] * 12
    assert db_calls.count("gate_orm") == 1, db_calls
    assert _counters(workspace) == {"llm_tokens": (12 * TOKENS, 0), "requests": (12, 0)}
    assert responses[0].headers["X-RateLimit-Limit"] == "1000"
    assert sorted(int(r.headers["X-RateLimit-Remaining"]) for r in responses) == list(range(988, 1000))


def test_the_lane_survives_a_redis_that_forgot_its_scripts(fast, db_calls):
    """A Redis restart empties its script cache: the gate and budget scripts are loaded again."""
    workspace, plaintext, base_url = fast
    assert _post(base_url, plaintext).status_code == 200
    assert _post(base_url, plaintext).status_code == 200
    cache.client.get_client(write=True).script_flush()
    db_calls.clear()

    after = _post(base_url, plaintext)

    assert after.status_code == 200, after.text
    assert db_calls == []  # still the fast lane, not a fallback to the ORM path
    assert _counters(workspace) == {"llm_tokens": (3 * TOKENS, 0), "requests": (3, 0)}
    assert budget_spent_get(day=DailySpend.objects.get().day) == usd_to_micro(3 * OPENROUTER_COST)


def test_a_steady_call_leaves_no_handler_or_database_wrapper_for_the_cyclic_collector(fast):
    """Each call used to leave ~75 objects in reference cycles, work for the cyclic collector:
    its tasks (a swallowed RequestAborted), a fresh database wrapper (built to quote a table
    name), and DRF's view, requests and response."""
    _workspace, plaintext, base_url = fast
    assert _post(base_url, plaintext).status_code == 200
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        codes = [_post(base_url, plaintext).status_code for _ in range(5)]
        gc.collect()
        kinds = Counter(type(o).__name__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()

    assert codes == [200] * 5
    # (The test's own HTTP clients leave some: only the server's objects are counted.)
    server_side = (
        "RequestAborted",
        "Task",
        "DatabaseWrapper",
        "ChatCompletionsApi",
        "AsyncRequest",
        "ASGIRequest",
    )
    assert {kind: kinds[kind] for kind in server_side} == dict.fromkeys(server_side, 0), kinds


def test_a_starting_worker_opens_its_connections_and_loads_the_catalogue(transactional_db, settings):
    """After a deploy, the first burst must not queue behind connection setup (ASGI lifespan)."""
    selectors.catalog_invalidate()
    loops_before = set(fastio._stores)

    with uvicorn_served(lifespan="on") as (_base_url, thread):
        started = [stores for loop, stores in fastio._stores.items() if loop not in loops_before]
        catalogue_loaded = selectors.catalog_is_fresh()
        [stores] = started
        pool_size = stores.pool.get_stats()["pool_size"]

    assert not thread.is_alive()
    assert catalogue_loaded
    assert pool_size == settings.PROXY_FAST_LANE_DB_CONNECTIONS


def test_a_stream_settles_with_the_provider_usage(fast, fake_upstream, db_calls):
    workspace, plaintext, base_url = fast
    assert _post(base_url, plaintext).status_code == 200
    db_calls.clear()

    with httpx.stream(
        "POST",
        base_url + URL,
        json={**BODY, "stream": True},
        headers={"Authorization": f"Bearer {plaintext}"},
        timeout=20,
    ) as response:
        raw = b"".join(response.iter_bytes())

    assert response.status_code == 200, raw
    assert response.headers["X-Tollgate-Provider"] == "openrouter"
    events = [line[5:].strip() for line in raw.splitlines() if line.startswith(b"data:")]
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "word " * 5
    assert not any("usage" in c for c in chunks)  # the client did not ask for the usage event
    assert fake_upstream.requests[-1]["json"]["stream_options"] == {"include_usage": True}
    assert db_calls == []
    # The body ends only once the call is on the books.
    stream_event = UsageEvent.objects.filter(workspace=workspace).order_by("pk").last()
    assert (stream_event.status_code, stream_event.total_tokens, stream_event.is_estimated) == (
        200,
        STREAM_TOKENS,
        False,
    )
    assert stream_event.cost_usd > 0
    assert _counters(workspace) == {"llm_tokens": (TOKENS + STREAM_TOKENS, 0), "requests": (2, 0)}
    assert _held(workspace) == []
    spend = DailySpend.objects.get()
    assert spend.spent_usd == OPENROUTER_COST + stream_event.cost_usd
    assert budget_spent_get(day=spend.day) == usd_to_micro(spend.spent_usd)


# --- Who may call ----------------------------------------------------------------------------


def test_a_revoked_key_is_refused_on_the_very_next_call(fast, db_calls):
    workspace, plaintext, base_url = fast
    assert _post(base_url, plaintext).status_code == 200
    db_calls.clear()
    assert _post(base_url, plaintext).status_code == 200
    assert db_calls == []  # the key is known to the fast gate

    api_key_revoke(workspace=workspace, key_id=ApiKey.objects.get(workspace=workspace).pk)
    refused = _post(base_url, plaintext)

    assert refused.status_code == 401, refused.text
    assert _counters(workspace) == {"llm_tokens": (2 * TOKENS, 0), "requests": (2, 0)}
    assert UsageEvent.objects.filter(workspace=workspace).count() == 2
    # The refusal reaches the operator's abuse list, counted against the key's workspace.
    assert list(InvalidKeyDay.objects.values_list("workspace_id", "minutes")) == [(workspace.pk, 1)]


def test_a_rotated_key_stops_at_the_end_of_its_grace_and_the_new_one_works(fast, db_calls):
    workspace, plaintext, base_url = fast
    assert [_post(base_url, plaintext).status_code for _ in range(2)] == [200, 200]

    rotation = api_key_rotate(
        workspace=workspace, key_id=ApiKey.objects.get(workspace=workspace).pk, grace_seconds=1
    )
    db_calls.clear()
    in_grace = _post(base_url, plaintext)
    in_grace_threaded = list(db_calls)
    time.sleep(max(0.0, (rotation.old_key.expires_at - timezone.now()).total_seconds()) + 0.2)
    expired = _post(base_url, plaintext)
    new_key = [_post(base_url, rotation.plaintext).status_code for _ in range(2)]

    assert in_grace.status_code == 200, in_grace.text
    assert in_grace_threaded == []  # the fast gate read the new expiry and let the call through
    assert expired.status_code == 401, expired.text
    assert new_key == [200, 200]
    assert _counters(workspace) == {"llm_tokens": (5 * TOKENS, 0), "requests": (5, 0)}


def test_a_deactivated_user_is_refused_on_the_very_next_call(fast, db_calls):
    workspace, plaintext, base_url = fast
    assert _post(base_url, plaintext).status_code == 200
    db_calls.clear()
    assert _post(base_url, plaintext).status_code == 200
    assert db_calls == []  # the key is known to the fast gate

    user, user_admin = workspace.personal_owner, admin.site._registry[User]  # the key's creator
    user.is_active = False  # as the admin's change form saves it
    user_admin.save_model(request=None, obj=user, form=None, change=True)
    refused = _post(base_url, plaintext)
    user.is_active = True
    user_admin.save_model(request=None, obj=user, form=None, change=True)
    back = _post(base_url, plaintext)

    assert refused.status_code == 401, refused.text
    assert back.status_code == 200, back.text
    assert _counters(workspace) == {"llm_tokens": (3 * TOKENS, 0), "requests": (3, 0)}
    assert UsageEvent.objects.filter(workspace=workspace).count() == 3


def test_a_replaced_or_added_provider_key_is_used_on_the_very_next_call(fast, fake_upstream, db_calls):
    """The fast lane keeps decrypted provider keys in process; a change must reach the next call."""
    workspace, plaintext, base_url = fast
    assert [_post(base_url, plaintext).status_code for _ in range(2)] == [200, 200]
    assert fake_upstream.requests[-1]["headers"]["Authorization"] == "Bearer sk-operator-0123456789"

    global_key_set("openrouter", "sk-operator-rotated-9876543210")
    rotated = _post(base_url, plaintext)
    workspace_key_set(workspace, "openrouter", "sk-mine-0123456789")
    db_calls.clear()
    own_key = _post(base_url, plaintext)

    assert rotated.status_code == 200, rotated.text
    assert own_key.status_code == 200, own_key.text
    sent = [r["headers"]["Authorization"] for r in fake_upstream.requests[-2:]]
    assert sent == ["Bearer sk-operator-rotated-9876543210", "Bearer sk-mine-0123456789"]
    assert "gate_orm" not in db_calls  # still the fast gate
    last = UsageEvent.objects.filter(workspace=workspace).order_by("pk").last()
    assert (last.key_source, last.cost_usd) == ("workspace", 0)
    assert _held(workspace) == []


# --- Limits ----------------------------------------------------------------------------------


def test_rate_limit_refuses_call_n_plus_one_and_counts_each_call_once(fast, db_calls):
    workspace, plaintext, base_url = fast
    plan_configure(weights={"openrouter": 100}, fallback_provider="groq", rate_limit_per_minute=3)
    key_id = ApiKey.objects.get(workspace=workspace).pk
    _outside_minute_end()

    responses = [_post(base_url, plaintext)]
    db_calls.clear()
    responses += [_post(base_url, plaintext) for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 200, 429], responses[-1].text
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    assert all(r.headers["X-RateLimit-Limit"] == "3" for r in responses)
    refused = responses[-1]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Calls 2 to 4 were gated (and the last refused) by the fast gate; the only thread hop is
    # the refused minute's record for the abuse list.
    assert db_calls == ["rate_limited_minute_record"]
    assert cache.get(rate_limit_window(key_id=key_id)[0]) == 4  # one count per call
    assert _counters(workspace) == {"llm_tokens": (3 * TOKENS, 0), "requests": (3, 0)}
    assert UsageEvent.objects.filter(workspace=workspace).count() == 3
    # The refused minute is recorded for the abuse list, in the background.
    deadline = time.monotonic() + 5
    while not RateLimitedDay.objects.filter(workspace=workspace).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(RateLimitedDay.objects.filter(workspace=workspace).values_list("minutes", flat=True)) == [1]


def test_a_call_the_fast_gate_counted_then_handed_over_is_not_counted_again(fast, db_calls):
    """The fast gate counts the request, then leaves a catalogue version this process has not
    loaded to the ORM gate, which must reuse that count rather than count it a second time."""
    workspace, plaintext, base_url = fast
    plan_configure(weights={"openrouter": 100}, fallback_provider="groq", rate_limit_per_minute=3)
    key_id = ApiKey.objects.get(workspace=workspace).pk
    _outside_minute_end()

    responses = [_post(base_url, plaintext) for _ in range(2)]
    plan_configure(weights={"openrouter": 100}, fallback_provider="groq", rate_limit_per_minute=3)
    db_calls.clear()
    responses.append(_post(base_url, plaintext))
    handed_over = list(db_calls)
    db_calls.clear()
    responses.append(_post(base_url, plaintext))

    assert [r.status_code for r in responses] == [200, 200, 200, 429], responses[2].text
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    assert "gate_orm" in handed_over, handed_over
    # The new catalogue is loaded: the fast gate refuses the fourth call (and records the minute).
    assert db_calls == ["rate_limited_minute_record"]
    assert cache.get(rate_limit_window(key_id=key_id)[0]) == 4
    assert _counters(workspace)["requests"] == (3, 0)


def _fire(base_url: str, key: str, count: int) -> list[httpx.Response]:
    barrier = threading.Barrier(count)
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def worker():
        with httpx.Client(timeout=30) as client:
            barrier.wait()
            response = client.post(base_url + URL, json=BODY, headers={"Authorization": f"Bearer {key}"})
            response.read()
        with lock:
            results.append(response)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_calls_racing_for_the_last_requests_of_the_quota(fast, fake_upstream, db_calls):
    workspace, plaintext, base_url = fast
    quota = 5
    plan_configure(
        weights={"openrouter": 100},
        fallback_provider="groq",
        limits={"requests": quota, "llm_tokens": 1_000_000, "emails": 0},
    )
    assert _post(base_url, plaintext).status_code == 200  # learns the key, creates the counters
    db_calls.clear()

    results = _fire(base_url, plaintext, 12)

    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * (quota - 1) + [429] * (12 - quota + 1)
    refused = [r.json()["error"] for r in results if r.status_code == 429]
    assert {error["code"] for error in refused} == {"quota_exceeded"}
    assert all(error["quota"]["limit"] == quota for error in refused)
    # The winners were reserved on the fast lane; each refused reserve went to the ORM path.
    assert db_calls.count("funding_reserve") == len(refused), db_calls
    assert UsageEvent.objects.filter(workspace=workspace, error_code="quota_exceeded").count() == len(refused)
    assert _counters(workspace) == {"requests": (quota, 0), "llm_tokens": (quota * TOKENS, 0)}
    assert _held(workspace) == []
    assert UsageEvent.objects.filter(workspace=workspace, status_code=200).count() == quota
    assert (
        UsageEvent.objects.filter(workspace=workspace, status_code=200).exclude(total_tokens=TOKENS).count()
        == 0
    )
    assert len(fake_upstream.requests) == quota
    spend = DailySpend.objects.get()
    assert spend.spent_usd == quota * OPENROUTER_COST
    assert budget_spent_get(day=spend.day) == usd_to_micro(quota * OPENROUTER_COST)


# --- Provider budget and failures --------------------------------------------------------------


def test_a_call_todays_budget_cannot_cover_goes_to_the_fallback_provider(
    fast, fake_upstream, settings, db_calls
):
    workspace, plaintext, base_url = fast
    settings.DAILY_BUDGET_USD = Decimal("0.0001")  # less than one gpt-4o call's maximum

    responses = [_post(base_url, plaintext)]
    # The quota was reserved beside the budget hold, so the refusal gave it back ...
    assert "funding_release" in db_calls
    db_calls.clear()
    responses.append(_post(base_url, plaintext))

    for response in responses:
        assert response.status_code == 200, response.text
        data = response.json()
        assert (data["provider"], data["budget_fallback"], data["fallback"], data["cost"]) == (
            "groq",
            True,
            False,
            0,
        )
    # ... and the next call asked the budget first: no reserve to give back, no thread.
    assert db_calls == []
    assert [r["path"] for r in fake_upstream.requests] == ["/groq/chat/completions"] * 2
    events = UsageEvent.objects.filter(workspace=workspace).order_by("pk")
    assert [(e.provider, e.is_budget_fallback, e.total_tokens, e.cost_usd) for e in events] == [
        ("groq", True, TOKENS, 0)
    ] * 2
    assert _counters(workspace) == {"llm_tokens": (2 * TOKENS, 0), "requests": (2, 0)}
    assert _held(workspace) == []
    assert budget_spent_get(day=timezone.now().date()) == 0  # the refused reservations hold nothing


def test_the_budget_hold_and_the_quota_reserve_are_in_flight_together(fast, monkeypatch, db_calls):
    """The call waits for the slower of the two round trips, not their sum: the budget hold
    is still open when the quota reserve starts."""
    workspace, plaintext, base_url = fast
    assert _post(base_url, plaintext).status_code == 200  # the key's first call: the ORM gate
    reserve_started = asyncio.Event()
    overlapped = []
    budget_reserve, funding_reserve = prepare._budget_reserve, prepare._funding_reserve

    async def budget_reserve_waiting(**kwargs):
        await asyncio.wait_for(reserve_started.wait(), timeout=5)
        overlapped.append(True)
        return await budget_reserve(**kwargs)

    async def funding_reserve_noted(**kwargs):
        reserve_started.set()
        return await funding_reserve(**kwargs)

    monkeypatch.setattr(prepare, "_budget_reserve", budget_reserve_waiting)
    monkeypatch.setattr(prepare, "_funding_reserve", funding_reserve_noted)
    db_calls.clear()
    response = _post(base_url, plaintext)

    assert response.status_code == 200, response.text
    assert overlapped == [True]
    assert db_calls == []
    assert _counters(workspace) == {"llm_tokens": (2 * TOKENS, 0), "requests": (2, 0)}
    assert budget_spent_get(day=timezone.now().date()) == usd_to_micro(2 * OPENROUTER_COST)


def test_a_call_that_crosses_midnight_stays_on_the_day_it_was_admitted(
    fast, fake_upstream, monkeypatch, db_calls
):
    """The grouped settle dates the event, rollup and spend like the budget hold: the day the
    call was admitted, even when the provider answers after midnight."""
    workspace, plaintext, base_url = fast
    day = timezone.now().date()
    before_midnight = datetime.combine(day, datetime.max.time(), tzinfo=UTC) - timedelta(seconds=2)
    after_midnight = before_midnight + timedelta(seconds=3)
    with time_machine.travel(before_midnight, tick=False) as clock:
        assert _post(base_url, plaintext).status_code == 200  # the key's first call: the ORM gate
        answer = fake_upstream.completion

        def answer_after_midnight(payload):
            clock.move_to(after_midnight)
            return answer(payload)

        monkeypatch.setattr(fake_upstream, "completion", answer_after_midnight)
        db_calls.clear()
        response = _post(base_url, plaintext)

    assert response.status_code == 200, response.text
    assert db_calls == []  # served and settled by the fast lane
    events = UsageEvent.objects.filter(workspace=workspace).order_by("pk")
    assert [e.created_at.date() for e in events] == [day, day]
    assert list(UsageDailyRollup.objects.filter(workspace=workspace).values_list("day", "requests")) == [
        (day, 2)
    ]
    assert list(DailySpend.objects.values_list("day", "spent_usd")) == [(day, 2 * OPENROUTER_COST)]
    assert budget_spent_get(day=day) == usd_to_micro(2 * OPENROUTER_COST)
    assert budget_spent_get(day=day + timedelta(days=1)) == 0


def test_a_failing_provider_falls_back_and_charges_once(fast, fake_upstream):
    workspace, plaintext, base_url = fast
    assert _post(base_url, plaintext).status_code == 200
    fake_upstream.path_modes = {"/openrouter": "500"}

    response = _post(base_url, plaintext)

    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["provider"], data["fallback"]) == ("groq", True)
    assert data["quota"]["used"] == 2 * TOKENS
    last = UsageEvent.objects.filter(workspace=workspace).order_by("pk").last()
    assert (last.provider, last.is_fallback, last.total_tokens, last.cost_usd) == ("groq", True, TOKENS, 0)
    assert UsageEvent.objects.filter(workspace=workspace).count() == 2
    assert _counters(workspace) == {"llm_tokens": (2 * TOKENS, 0), "requests": (2, 0)}
    assert _held(workspace) == []
    spend = DailySpend.objects.get()
    assert spend.spent_usd == OPENROUTER_COST  # the first call only: the failed attempt costs nothing
    assert budget_spent_get(day=spend.day) == usd_to_micro(OPENROUTER_COST)


def test_every_provider_failing_charges_nothing_and_holds_nothing(fast, fake_upstream):
    workspace, plaintext, base_url = fast
    assert _post(base_url, plaintext).status_code == 200
    fake_upstream.mode = "500"

    response = _post(base_url, plaintext)

    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_error"
    assert "X-RateLimit-Remaining" in response.headers
    assert [r["path"] for r in fake_upstream.requests[-2:]] == [
        "/openrouter/chat/completions",
        "/groq/chat/completions",
    ]
    failed = UsageEvent.objects.filter(workspace=workspace).order_by("pk").last()
    assert (failed.status_code, failed.total_tokens, failed.cost_usd) == (502, 0, 0)
    assert _counters(workspace) == {"llm_tokens": (TOKENS, 0), "requests": (1, 0)}
    assert _held(workspace) == []
    spend = DailySpend.objects.get()
    assert spend.spent_usd == OPENROUTER_COST
    assert budget_spent_get(day=spend.day) == usd_to_micro(OPENROUTER_COST)
