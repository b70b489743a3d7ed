"""The chat edge (``proxy/edge.py``): the fast lane's steady chat call served as a plain ASGI
route must answer exactly as the DRF view does, and hand everything else to the view without
losing the body or counting the rate limit twice.

Served by uvicorn with the fast lane on. A key's first call in a process is always handed to
the view (the ORM gate learns the key); the calls after it are the edge's.
"""

import time

import httpx
import pytest
from django.core.cache import cache

from accounts.models import ApiKey
from billing.models import QuotaReservation, UsageCounter
from proxy import apis, edge
from proxy.models import UsageEvent
from proxy.ratelimit import rate_limit_window

from ..factories import global_key_set, plan_configure
from .test_client_disconnect import _post_and_hang_up

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

URL = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}
TOKENS = 25  # the fake provider's 10 prompt + 15 completion tokens
# Headers whose value differs from call to call by nature, or only in framing.
FRAMING = {"date", "server", "content-length", "transfer-encoding"}


@pytest.fixture
def served_by(monkeypatch):
    """Who answered each chat call, in order: "edge" or "view"."""
    log: list[str] = []
    real_answer, real_chat_call = edge._answer, apis._chat_call

    async def answer(*args, **kwargs):
        log.append("edge")
        return await real_answer(*args, **kwargs)

    def chat_call(*args, **kwargs):
        log.append("view")
        return real_chat_call(*args, **kwargs)

    monkeypatch.setattr(edge, "_answer", answer)
    monkeypatch.setattr(apis, "_chat_call", chat_call)
    return log


@pytest.fixture
def lane(caller, fake_upstream, live_asgi_fast):
    """(user, key, base URL, key id) with the key already learned: its next call is the edge's."""
    user, plaintext, _client = caller
    plan_configure(weights={"openrouter": 100}, fallback_provider="groq", rate_limit_per_minute=50)
    global_key_set("openrouter")
    global_key_set("groq")
    _outside_minute_end()
    first = _post(live_asgi_fast, plaintext)
    assert first.status_code == 200, first.text
    return user, plaintext, live_asgi_fast, ApiKey.objects.get(user=user).pk


def _outside_minute_end(margin: float = 15.0) -> None:
    """The rate-limit window is a calendar minute: start far enough from its end."""
    if time.time() % 60 > 60 - margin:
        time.sleep(60 - time.time() % 60 + 0.1)


def _post(base_url: str, key: str, body=None, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    if "content" not in kwargs and "json" not in kwargs:
        kwargs["json"] = BODY if body is None else body
    return httpx.post(base_url + URL, headers=headers, timeout=20, **kwargs)


def _shape(response: httpx.Response) -> tuple:
    """Status, header names and body keys: what must not depend on who answered."""
    names = {name.lower() for name in response.headers} - FRAMING
    body = response.json()
    return response.status_code, names, sorted(body), sorted(body.get("error", {}))


def test_the_steady_call_is_the_edges_and_answers_like_the_view(lane, served_by):
    user, plaintext, base_url, _key_id = lane
    other, other_key = _learned_twin(base_url)

    served_by.clear()
    by_edge = _post(base_url, plaintext, headers={"X-Request-ID": "trace-123"})
    by_view = _view_answer(base_url, other_key, headers={"X-Request-ID": "trace-123"})

    assert served_by == ["edge", "view"]
    assert by_edge.status_code == 200, by_edge.text
    assert _shape(by_edge) == _shape(by_view)
    for name in ("Content-Type", "X-Request-ID", "X-Content-Type-Options", "Allow", "X-RateLimit-Limit"):
        assert by_edge.headers[name] == by_view.headers[name], name
    assert by_edge.headers["X-Request-ID"] == "trace-123"
    assert by_edge.headers["X-RateLimit-Remaining"] == by_view.headers["X-RateLimit-Remaining"] == "48"
    edge_body, view_body = by_edge.json(), by_view.json()
    assert edge_body["quota"] == view_body["quota"]
    assert (edge_body["provider"], edge_body["cost"], edge_body["usage"]) == (
        view_body["provider"],
        view_body["cost"],
        view_body["usage"],
    )
    # On the books like any call: two events each, counters exact, nothing held.
    for owner in (user, other):
        counters = {c.meter: (c.used, c.reserved) for c in UsageCounter.objects.filter(user=owner)}
        assert counters == {"llm_tokens": (2 * TOKENS, 0), "requests": (2, 0)}
        assert UsageEvent.objects.filter(user=owner, status_code=200).count() == 2


def _learned_twin(base_url: str):
    """A second caller on the same plan, its key learned too."""
    from ..factories import key_for

    other, other_key = key_for()
    assert _post(base_url, other_key).status_code == 200
    return other, other_key


def _view_answer(base_url: str, key: str, **kwargs) -> httpx.Response:
    """The same call answered by the DRF view (the edge hands everything over with the fast lane off)."""
    from django.test import override_settings

    with override_settings(PROXY_FAST_LANE=False):
        return _post(base_url, key, **kwargs)


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "invalid_json"),
        ({"content": b'{"a": 1}', "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"json": {"messages": [{"role": "robot", "content": "x"}]}}, 400, "invalid_request"),
        ({"json": {"messages": []}}, 400, "invalid_request"),
        ({"json": [1, 2]}, 400, "invalid_request"),
        ({"content": b"", "headers": {"Content-Type": "application/json"}}, 400, "invalid_request"),
    ],
    ids=["invalid-json", "not-json-type", "bad-role", "no-messages", "not-an-object", "empty"],
)
def test_a_body_the_edge_does_not_take_is_the_views_and_counted_once(
    lane, served_by, request_kwargs, status, code
):
    _user, plaintext, base_url, key_id = lane
    served_by.clear()

    response = _post(base_url, plaintext, **request_kwargs)

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert "edge" not in served_by
    assert response.headers["X-RateLimit-Remaining"] == "48"  # the learning call, then this one
    assert cache.get(rate_limit_window(key_id=key_id)[0]) == 2


def test_an_oversized_body_is_refused_413_by_the_view(lane, served_by, settings):
    _user, plaintext, base_url, _key_id = lane
    settings.PROXY_MAX_BODY_BYTES = 2_000
    big = {**BODY, "messages": [{"role": "user", "content": "x" * 5_000}]}

    declared = _post(base_url, plaintext, big)
    chunked = httpx.post(
        base_url + URL,
        content=iter([b'{"messages": [{"role": "user", "content": "', b"x" * 5_000, b'"}]}']),
        headers={"Authorization": f"Bearer {plaintext}", "Content-Type": "application/json"},
        timeout=20,
    )

    assert [declared.status_code, chunked.status_code] == [413, 413], chunked.text
    assert declared.json()["error"]["code"] == "payload_too_large"
    assert "edge" not in served_by


def test_a_missing_or_unknown_key_is_the_views_401(lane, served_by):
    _user, _plaintext, base_url, _key_id = lane
    served_by.clear()

    missing = httpx.post(base_url + URL, json=BODY, timeout=20)
    unknown = _post(base_url, "sk_agentai_" + "A" * 40)

    assert [missing.status_code, unknown.status_code] == [401, 401]
    assert {missing.json()["error"]["type"], unknown.json()["error"]["type"]} == {"authentication_error"}
    assert "edge" not in served_by


def test_other_methods_are_the_views(lane, served_by):
    _user, plaintext, base_url, _key_id = lane
    response = httpx.get(base_url + URL, headers={"Authorization": f"Bearer {plaintext}"}, timeout=20)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_the_edge_refuses_past_the_rate_limit_and_over_the_plans_token_cap(lane, served_by):
    user, plaintext, base_url, key_id = lane
    plan_configure(weights={"openrouter": 100}, fallback_provider="groq", rate_limit_per_minute=3)
    assert _post(base_url, plaintext).status_code == 200  # the new catalogue: loaded via the view
    served_by.clear()

    over_cap = _post(base_url, plaintext, {**BODY, "max_tokens": 10_000})
    refused = _post(base_url, plaintext)

    assert served_by == ["edge", "edge"]
    assert over_cap.status_code == 400
    assert over_cap.json()["error"] == {
        "message": "max_tokens may not exceed 4000 on your plan.",
        "type": "invalid_request_error",
        "code": "invalid_request",
        "param": "max_tokens",
    }
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert cache.get(rate_limit_window(key_id=key_id)[0]) == 4
    assert UsageEvent.objects.filter(user=user, status_code=200).count() == 2  # refusals cost nothing
    assert not QuotaReservation.objects.filter(user=user, status="held").exists()


def test_a_stream_through_the_edge(lane, served_by):
    user, plaintext, base_url, _key_id = lane
    served_by.clear()

    with httpx.stream(
        "POST",
        base_url + URL,
        json={**BODY, "stream": True},
        headers={"Authorization": f"Bearer {plaintext}"},
        timeout=20,
    ) as response:
        raw = b"".join(response.iter_bytes())

    assert served_by == ["edge"]
    assert response.status_code == 200, raw
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["X-Tollgate-Provider"] == "openrouter"
    assert response.headers["X-RateLimit-Remaining"] == "48"
    data = [line[5:].strip() for line in raw.splitlines() if line.startswith(b"data:")]
    assert data[-1] == b"[DONE]"
    llm = UsageCounter.objects.get(user=user, meter="llm_tokens")
    assert (llm.used, llm.reserved) == (TOKENS + 15, 0)  # the learning call, then the stream's 15


def test_a_client_gone_while_the_edge_waits_for_the_provider_is_still_charged(lane, served_by, fake_upstream):
    user, plaintext, base_url, _key_id = lane
    fake_upstream.delay_seconds = 0.5
    fake_upstream.requests.clear()
    served_by.clear()

    _post_and_hang_up(base_url, plaintext, BODY, upstream=fake_upstream)

    deadline = time.monotonic() + 10
    while UsageEvent.objects.filter(user=user).count() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert served_by == ["edge"]
    assert UsageEvent.objects.filter(user=user, status_code=200).count() == 2
    counters = {c.meter: (c.used, c.reserved) for c in UsageCounter.objects.filter(user=user)}
    assert counters == {"llm_tokens": (2 * TOKENS, 0), "requests": (2, 0)}
