"""Failed API-key authentications are limited per client address (``AUTH_FAILURES_PER_MINUTE``).

Past the limit an address's keys are answered 429 ``too_many_failed_authentications`` with
``Retry-After`` and no database query, until the minute ends. A valid key the shared cache knows
is still served from that address (a NAT'd office shares it); see ``ApiKeyAuthentication``.
"""

import logging
import threading
from datetime import UTC, datetime

import pytest
import time_machine
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.keys import api_key_generate
from accounts.models import InvalidKeyDay
from accounts.selectors import api_key_identity_get, auth_failure_throttle_check, auth_failure_window
from accounts.services import api_key_revoke, auth_failure_record
from accounts.tests.factories import api_key_for
from core.exceptions import ApiError

pytestmark = pytest.mark.django_db

LIMIT = 3
MINUTE = datetime(2026, 11, 21, 10, 0, 5, tzinfo=UTC)  # 55 s left in its window
NEXT_MINUTE = datetime(2026, 11, 21, 10, 1, 5, tzinfo=UTC)
ADDRESS = "203.0.113.7"
OTHER_ADDRESS = "198.51.100.20"


@pytest.fixture(autouse=True)
def limit(settings):
    settings.AUTH_FAILURES_PER_MINUTE = LIMIT
    settings.RATELIMIT_ENABLE = True
    settings.NUM_PROXIES = 0


@pytest.fixture
def frozen():
    with time_machine.travel(MINUTE, tick=False) as traveller:
        yield traveller


def _get(key: str, *, address: str = ADDRESS, path: str = "/api/keys", **extra):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client.get(path, REMOTE_ADDR=address, **extra)


def _fail_up_to_the_limit(address: str = ADDRESS) -> None:
    statuses = [_get(api_key_generate(), address=address).status_code for _ in range(LIMIT)]
    assert statuses == [401] * LIMIT


def _assert_throttled(response, *, retry_after: int = 55):
    assert response.status_code == 429
    assert response["Content-Type"].startswith("application/json")
    assert response["Retry-After"] == str(retry_after)
    error = response.json()["error"]
    assert error["code"] == "too_many_failed_authentications"
    assert error["type"] == "rate_limit_error"
    assert error["param"] is None
    assert f"Retry after {retry_after} seconds" in error["message"]


def test_the_attempt_after_the_limit_is_429_without_a_query(frozen, django_assert_num_queries):
    _fail_up_to_the_limit()

    with django_assert_num_queries(0):
        responses = [_get(api_key_generate()) for _ in range(5)]

    for response in responses:
        _assert_throttled(response)


def test_another_address_is_unaffected(frozen):
    _fail_up_to_the_limit()

    response = _get(api_key_generate(), address=OTHER_ADDRESS)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_a_valid_key_in_use_is_still_served_from_a_throttled_address(frozen, bearer_client):
    assert _get(bearer_client.plaintext).status_code == 200  # its identity is now cached
    _fail_up_to_the_limit()
    _assert_throttled(_get(api_key_generate()))

    assert _get(bearer_client.plaintext).status_code == 200


def test_a_cached_valid_key_pays_no_counter_round_trip(frozen, bearer_client, monkeypatch):
    assert _get(bearer_client.plaintext).status_code == 200  # its identity is now cached
    touched = []
    monkeypatch.setattr("accounts.selectors.auth_failure_throttle_check", lambda **kw: touched.append(kw))
    monkeypatch.setattr("accounts.authentication.auth_failure_record", lambda **kw: touched.append(kw))

    assert _get(bearer_client.plaintext).status_code == 200

    assert touched == []


def test_a_valid_key_the_cache_does_not_know_waits_for_the_window_like_any_other(frozen, user):
    """Deciding it would take the very database lookup the limit is there to withhold."""
    _api_key, plaintext = api_key_for(user)
    _fail_up_to_the_limit()

    _assert_throttled(_get(plaintext))

    frozen.move_to(NEXT_MINUTE)
    assert _get(plaintext).status_code == 200


def test_a_client_looping_on_a_revoked_key_is_throttled_without_a_query(
    frozen, user, django_capture_on_commit_callbacks, django_assert_num_queries
):
    api_key, plaintext = api_key_for(user)
    with django_capture_on_commit_callbacks(execute=True):  # writes the cached "revoked" marker
        api_key_revoke(workspace=user.personal_workspace, key_id=api_key.pk)

    assert [_get(plaintext).status_code for _ in range(LIMIT)] == [401] * LIMIT
    with django_assert_num_queries(0):
        responses = [_get(plaintext) for _ in range(3)]

    for response in responses:
        _assert_throttled(response)
    [day] = InvalidKeyDay.objects.filter(workspace=user.personal_workspace)
    assert day.minutes == 1  # the owner's abuse count is untouched by the throttle


def test_the_window_ends_with_the_minute(frozen):
    _fail_up_to_the_limit()
    frozen.move_to(datetime(2026, 11, 21, 10, 0, 59, tzinfo=UTC))
    _assert_throttled(_get(api_key_generate()), retry_after=1)

    frozen.move_to(NEXT_MINUTE)

    assert _get(api_key_generate()).status_code == 401


def test_zero_disables_the_limit(frozen, settings):
    settings.AUTH_FAILURES_PER_MINUTE = 0

    statuses = {_get(api_key_generate()).status_code for _ in range(LIMIT * 4)}

    assert statuses == {401}
    counter, _reset_at = auth_failure_window(address=ADDRESS)
    assert cache.get(counter) is None  # not even counted


def test_malformed_keys_are_neither_counted_nor_throttled(frozen):
    statuses = [_get("sk_agentai_" + "A" * 46).status_code for _ in range(LIMIT + 2)]

    assert statuses == [401] * (LIMIT + 2)
    assert _get(api_key_generate()).status_code == 401


def test_one_warning_per_address_and_minute_without_key_material(frozen, caplog):
    caplog.set_level(logging.WARNING, logger="tollgate.accounts")
    keys = [api_key_generate() for _ in range(LIMIT + 4)]

    for key in keys:
        _get(key)
    frozen.move_to(NEXT_MINUTE)
    for key in keys[: LIMIT + 1]:
        _get(key)

    warnings = [r for r in caplog.records if "reached the limit" in r.getMessage()]
    assert [(r.client_address, r.limit) for r in warnings] == [(ADDRESS, LIMIT)] * 2
    logged = caplog.text + " ".join(str(vars(record)) for record in caplog.records)
    assert not any(key in logged or key[:20] in logged for key in keys)


def test_x_forwarded_for_is_ignored_by_default(frozen):
    for index in range(LIMIT):
        _get(api_key_generate(), HTTP_X_FORWARDED_FOR=f"192.0.2.{index}")

    _assert_throttled(_get(api_key_generate(), HTTP_X_FORWARDED_FOR="192.0.2.200"))


def test_behind_one_trusted_proxy_the_forwarded_client_is_limited(frozen, settings):
    settings.NUM_PROXIES = 1
    proxy_address = "10.0.0.2"
    for _ in range(LIMIT):
        # The client's own claim (left) is not trusted; what our proxy appended (right) is.
        _get(api_key_generate(), address=proxy_address, HTTP_X_FORWARDED_FOR=f"1.1.1.1, {ADDRESS}")

    _assert_throttled(_get(api_key_generate(), address=proxy_address, HTTP_X_FORWARDED_FOR=ADDRESS))
    response = _get(
        api_key_generate(), address=proxy_address, HTTP_X_FORWARDED_FOR=f"{ADDRESS}, {OTHER_ADDRESS}"
    )
    assert response.status_code == 401


# --- The proxy endpoint (async view; authentication runs in DRF's ``initial()`` on the ORM gate) --


@pytest.fixture
def same_thread_db(monkeypatch):
    """The proxy's database blocks on the test thread, so the query count sees them."""
    monkeypatch.setattr("proxy.dbcall.THREAD_SENSITIVE", True)


def _chat(key: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
    return client.post("/api/proxy/v1/chat/completions", body, format="json", REMOTE_ADDR=ADDRESS)


@pytest.mark.django_db(transaction=True)  # the view's blocks close the connection as in production
def test_the_proxy_answers_the_same_429_without_a_query(frozen, same_thread_db, django_assert_num_queries):
    assert [_chat(api_key_generate()).status_code for _ in range(LIMIT)] == [401] * LIMIT

    with django_assert_num_queries(0):
        response = _chat(api_key_generate())

    _assert_throttled(response)


# --- The counter itself ------------------------------------------------------------------------


def test_the_identity_lookup_refuses_before_its_query(django_assert_num_queries):
    now = MINUTE.timestamp()
    for _ in range(LIMIT):
        auth_failure_record(address=ADDRESS, now=now)

    with django_assert_num_queries(0), pytest.raises(ApiError) as refused:
        api_key_identity_get(raw_key=api_key_generate(), now=MINUTE, client_address=ADDRESS)

    assert refused.value.status_code == 429
    with django_assert_num_queries(1):  # without an address (not a client request): looked up
        assert api_key_identity_get(raw_key=api_key_generate(), now=MINUTE) is None


@pytest.mark.redis
def test_the_limit_holds_across_workers_on_redis(caplog):
    """Concurrent threads (each with its own cache client) stand for worker processes."""
    caplog.set_level(logging.WARNING, logger="tollgate.accounts")
    now = MINUTE.timestamp()
    workers = 4 * LIMIT
    barrier = threading.Barrier(workers)
    refused = []

    def worker():
        barrier.wait()
        try:
            auth_failure_record(address=ADDRESS, now=now)
        except ApiError as exc:
            refused.append(exc.status_code)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert refused == [429] * (workers - LIMIT)
    assert len([r for r in caplog.records if "reached the limit" in r.getMessage()]) == 1
    counter, _reset_at = auth_failure_window(address=ADDRESS, now=now)
    assert cache.get(counter) == workers
    assert 0 < cache.ttl(counter) <= 65  # the window's key expires on its own
    with pytest.raises(ApiError):
        auth_failure_throttle_check(address=ADDRESS, now=now)
    auth_failure_throttle_check(address=OTHER_ADDRESS, now=now)  # no raise
