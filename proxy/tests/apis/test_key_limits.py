"""An API key's own limits and model allow-list, enforced on the call path (PostgreSQL, Redis,
the real async view)."""

import threading
from datetime import timedelta

import httpx
import pytest
import time_machine
from django.utils import timezone

from accounts.keys import api_key_hash
from accounts.models import ApiKey
from accounts.services import api_key_limits_set
from billing.models import KeyUsageCounter, KeyUsageHold, QuotaReservation, UsageCounter
from core.time import isoformat_z
from notifications.models import ThresholdState, WebhookEndpoint, WebhookEvent
from proxy.call import prepare
from proxy.models import UsageEvent

from ..factories import global_key_set, plan_configure

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

URL = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}
TOKENS = 25  # what the fake provider reports for BODY


def _key(plaintext: str) -> ApiKey:
    return ApiKey.objects.get(key_hash=api_key_hash(plaintext))


def _limit(plaintext: str, **changes) -> ApiKey:
    api_key = _key(plaintext)
    return api_key_limits_set(workspace=api_key.workspace, key_id=api_key.pk, **changes)


def _counter(api_key: ApiKey, unit: str, window: str) -> tuple[int, int]:
    counter = KeyUsageCounter.objects.get(api_key=api_key, unit=unit, window=window)
    return counter.used, counter.reserved


@pytest.fixture
def routed(midday, caller, fake_upstream, monkeypatch, settings):
    monkeypatch.setattr(prepare, "_budget_refused_at", {})
    settings.PROXY_QUOTA_BATCH = 0
    plan_configure(weights={"openrouter": 100}, limits={"requests": None, "llm_tokens": None, "emails": 0})
    global_key_set("openrouter")
    return caller


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


def test_fifty_calls_racing_for_five_requests_a_day_exactly_five_succeed(
    routed, fake_upstream, live_asgi_fast, settings
):
    settings.PROXY_QUOTA_BATCH = 8  # the worker's spare pool is on: the key limit stays exact
    _user, plaintext, _client = routed
    api_key = _limit(plaintext, limits=[{"unit": "requests", "window": "day", "amount": 5}])

    results = _fire(live_asgi_fast, plaintext, 50)

    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 5 + [429] * 45, [r.text for r in results if r.status_code not in (200, 429)]
    refused = [r for r in results if r.status_code == 429]
    assert {r.json()["error"]["code"] for r in refused} == {"key_limit_exceeded"}
    error = refused[0].json()["error"]
    assert (error["limit"], error["unit"], error["window"]) == (5, "requests", "day")
    assert 0 < int(refused[0].headers["Retry-After"]) <= 12 * 3600 + 1
    assert "x-should-retry" not in refused[0].headers  # a day limit resets: the client may retry
    assert _counter(api_key, "requests", "day") == (5, 0)
    assert not KeyUsageHold.objects.filter(status="held").exists()
    assert len(fake_upstream.requests) == 5


def test_a_token_limit_settles_to_what_the_call_used(routed):
    _user, plaintext, client = routed
    api_key = _limit(plaintext, limits=[{"unit": "tokens", "window": "month", "amount": 10_000}])

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 200, response.json()
    assert _counter(api_key, "tokens", "month") == (TOKENS, 0)
    hold = KeyUsageHold.objects.get()
    assert (hold.status, hold.actual) == ("settled", TOKENS)
    assert hold.amount > TOKENS  # the call's maximum was held, then settled to actual


def test_a_call_that_would_pass_the_token_limit_is_refused_and_holds_nothing(routed):
    _user, plaintext, client = routed
    api_key = _limit(plaintext, limits=[{"unit": "tokens", "window": "day", "amount": 10}])

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "key_limit_exceeded"
    assert _counter(api_key, "tokens", "day") == (0, 0)
    assert not QuotaReservation.objects.filter(status="held").exists()


def test_a_model_outside_the_allow_list_is_403_and_reserves_nothing(routed, fake_upstream):
    user, plaintext, client = routed
    _limit(
        plaintext,
        allowed_models=["claude-3-haiku"],
        limits=[{"unit": "requests", "window": "day", "amount": 5}],
    )

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_allowed"
    assert not KeyUsageCounter.objects.exists()
    assert not QuotaReservation.objects.exists()
    assert not UsageCounter.objects.filter(workspace=user.personal_workspace, used__gt=0).exists()
    assert fake_upstream.requests == []


def test_an_allowed_model_passes(routed):
    _user, plaintext, client = routed
    _limit(plaintext, allowed_models=["gpt-4o"])
    assert client.post(URL, BODY, format="json").status_code == 200


def test_a_total_limit_never_resets_so_no_retry_after(routed):
    _user, plaintext, client = routed
    api_key = _limit(plaintext, limits=[{"unit": "requests", "window": "total", "amount": 1}])

    assert client.post(URL, BODY, format="json").status_code == 200
    refused = client.post(URL, BODY, format="json")

    assert refused.status_code == 429
    assert "Retry-After" not in refused.headers
    assert refused.headers["x-should-retry"] == "false"
    error = refused.json()["error"]
    assert (error["window"], error["used"], error["limit"], error["resets_at"]) == ("total", 1, 1, None)
    assert _counter(api_key, "requests", "total") == (1, 0)


def test_a_daily_limit_resets_the_next_utc_day(routed):
    _user, plaintext, client = routed
    api_key = _limit(plaintext, limits=[{"unit": "requests", "window": "day", "amount": 1}])
    assert client.post(URL, BODY, format="json").status_code == 200
    refused = client.post(URL, BODY, format="json")
    assert refused.status_code == 429
    tomorrow = (timezone.now() + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert refused.json()["error"]["resets_at"] == isoformat_z(tomorrow)

    with time_machine.travel(tomorrow + timedelta(minutes=1), tick=True):
        assert client.post(URL, BODY, format="json").status_code == 200

    assert sorted(KeyUsageCounter.objects.filter(api_key=api_key).values_list("used", "reserved")) == [
        (1, 0),
        (1, 0),
    ]


def test_a_failed_upstream_call_releases_the_key_hold(routed, fake_upstream):
    _user, plaintext, client = routed
    api_key = _limit(plaintext, limits=[{"unit": "requests", "window": "day", "amount": 3}])
    fake_upstream.mode = "500"

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 502
    assert _counter(api_key, "requests", "day") == (0, 0)
    assert set(KeyUsageHold.objects.values_list("status", flat=True)) == {"released"}


def test_a_stream_settles_the_token_limit_to_the_provider_usage(routed):
    _user, plaintext, client = routed
    api_key = _limit(plaintext, limits=[{"unit": "tokens", "window": "day", "amount": 10_000}])

    response = client.post(URL, {**BODY, "stream": True}, format="json")
    body = b"".join(response.streaming_content)

    assert response.status_code == 200, body
    assert _counter(api_key, "tokens", "day") == (15, 0)  # the fake provider's streamed usage
    assert not KeyUsageHold.objects.filter(status="held").exists()


def test_the_call_that_crosses_eighty_percent_of_a_key_limit_fires_the_alert_once(routed):
    _user, plaintext, client = routed
    api_key = _limit(plaintext, limits=[{"unit": "requests", "window": "day", "amount": 5}])
    WebhookEndpoint.objects.create(
        workspace=api_key.workspace,
        url="https://hooks.example.com/t",
        events=["key.limit_reached"],
        secret="whsec_x",
    )

    for _ in range(3):
        assert client.post(URL, BODY, format="json").status_code == 200
    assert not ThresholdState.objects.filter(subject__startswith=f"key:{api_key.pk}:").exists()

    assert client.post(URL, BODY, format="json").status_code == 200  # 4 of 5: 80 %
    assert client.post(URL, BODY, format="json").status_code == 200  # 5 of 5: 100 %

    reached = list(
        ThresholdState.objects.filter(subject=f"key:{api_key.pk}:requests:day").values_list(
            "threshold", flat=True
        )
    )
    assert sorted(reached) == [80, 100]
    events = [
        event.data for event in WebhookEvent.objects.filter(type="key.limit_reached").order_by("created_at")
    ]
    assert [(event["threshold"], event["used"], event["limit"]) for event in events] == [
        (80, 4, 5),
        (100, 5, 5),
    ]


def test_forty_calls_racing_for_a_token_limit_never_pass_it(routed, fake_upstream, live_asgi_fast, settings):
    """Each call holds its maximum (prompt estimate + max_tokens) and settles to the provider's
    usage, so how many pass depends on when the first ones settle — but the tokens used never
    pass the limit, and what the counter says is what the events used."""
    settings.PROXY_QUOTA_BATCH = 8
    _user, plaintext, _client = routed
    api_key = _limit(plaintext, limits=[{"unit": "tokens", "window": "day", "amount": 300}])

    results = _fire(live_asgi_fast, plaintext, 40)

    statuses = {r.status_code for r in results}
    assert statuses <= {200, 429}, [r.text for r in results if r.status_code not in (200, 429)]
    served = sum(r.status_code == 200 for r in results)
    used, reserved = _counter(api_key, "tokens", "day")
    events = UsageEvent.objects.filter(status_code=200)
    assert reserved == 0 and used <= 300
    assert used == sum(events.values_list("total_tokens", flat=True))
    assert served == events.count() == len(fake_upstream.requests) >= 300 // 100
    assert not KeyUsageHold.objects.filter(status="held").exists()
