"""Regressions of the outside attack on the call path: bad input, holds on every exit,
provider text carrying our keys, the daily cap under large requests.

Black-box over HTTP against uvicorn in a thread (the production call path), then the books
are read directly.
"""

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest
from django.utils import timezone

from billing.models import QuotaReservation
from core.redact import secret_remember, secrets_redact
from credits.models import CreditHold
from proxy import budget, upstreams
from proxy.call import settle, upstream
from proxy.models import DailySpend, UsageEvent

from ..conftest import PROVIDERS
from ..factories import global_key_set, plan_configure, workspace_key_set

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/proxy/v1/chat/completions"
DEEPSEEK_URL = "/api/proxy/deepseek/chat"


@pytest.fixture
def live(live_asgi):
    return live_asgi


def _nothing_held(workspace) -> None:
    """No quota, credit or daily-budget hold of this workspace's calls is left, once they end."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        quota = QuotaReservation.objects.filter(
            workspace=workspace, status=QuotaReservation.Status.HELD
        ).count()
        credits = CreditHold.objects.filter(status=CreditHold.Status.HELD).count()
        spent = budget.budget_spent_get(day=timezone.now().date())
        settled = sum(e.cost_usd for e in UsageEvent.objects.all())
        if quota == 0 and credits == 0 and spent == budget.usd_to_micro(settled):
            return
        time.sleep(0.05)
    raise AssertionError(f"holds left: quota={quota}, credits={credits}, budget={spent} micro-USD")


def _post(base: str, key: str, raw: bytes, path: str = URL) -> httpx.Response:
    return httpx.post(
        f"{base}{path}",
        content=raw,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=15,
    )


BAD_BODIES = {
    "nul-in-model-streamed": b'{"model": "deepseek\\u0000chat", "stream": true, '
    b'"messages": [{"role": "user", "content": "hi"}]}',
    "nul-in-content": b'{"messages": [{"role": "user", "content": "a\\u0000b"}]}',
    "lone-surrogate-in-content": b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
    "lone-surrogate-in-model": b'{"model": "\\udfff", "messages": [{"role": "user", "content": "hi"}]}',
    "nul-in-a-key": b'{"messages": [{"role": "user", "content": "hi"}], "metadata": {"a\\u0000": 1}}',
    "nan-temperature": b'{"temperature": NaN, "messages": [{"role": "user", "content": "hi"}]}',
    "infinite-top-p": b'{"top_p": Infinity, "messages": [{"role": "user", "content": "hi"}]}',
    "overflowing-number": b'{"temperature": 1e999, "messages": [{"role": "user", "content": "hi"}]}',
    "stream-yes": b'{"stream": "yes", "messages": [{"role": "user", "content": "hi"}]}',
    "max-tokens-string": b'{"max_tokens": "100", "messages": [{"role": "user", "content": "hi"}]}',
    "n-string": b'{"n": "2", "messages": [{"role": "user", "content": "hi"}]}',
    "max-tokens-boolean": b'{"max_tokens": true, "messages": [{"role": "user", "content": "hi"}]}',
    "temperature-string": b'{"temperature": "hot", "messages": [{"role": "user", "content": "hi"}]}',
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_input_is_a_400_before_anything_is_held(caller, fake_upstream, live, body):
    user, plaintext, _client = caller
    plan_configure(weights={"deepseek": 100})
    global_key_set("deepseek")

    for path in (URL, DEEPSEEK_URL):
        response = _post(live, plaintext, body, path)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] in {"invalid_request", "invalid_json"}
        assert error["type"] == "invalid_request_error"

    assert fake_upstream.requests == []  # never forwarded
    _nothing_held(user.personal_workspace)
    assert budget.budget_spent_get(day=timezone.now().date()) == 0


def test_other_apis_refuse_nul_and_surrogates_too(api_client, django_user_model):
    user = django_user_model.objects.create_user(email="door@example.com", password="pw-0123456789")
    api_client.force_authenticate(user)
    for raw in (b'{"name": "a\\u0000b"}', b'{"name": "\\ud800"}', b'{"name": NaN}'):
        response = api_client.generic("POST", "/api/keys", raw, content_type="application/json")
        assert response.status_code == 400, response.content
        assert response.json()["error"]["code"] in {"invalid_json", "invalid_request"}


# --- Every hold is released on every exit ------------------------------------------------------


class Boom(RuntimeError):
    """A failure nobody planned for."""


def _fail_before_upstream(monkeypatch):
    async def broken(**kwargs):
        raise Boom("before the upstream")

    monkeypatch.setattr(upstreams, "chat_complete", broken)
    monkeypatch.setattr(upstreams, "chat_stream_open", broken)


def _fail_mid_stream(monkeypatch):
    original = upstreams.ChatStream.chunks

    async def broken(self):
        count = 0
        async for chunk in original(self):
            yield chunk
            count += 1
            if count == 2:
                raise Boom("during the stream")

    monkeypatch.setattr(upstreams.ChatStream, "chunks", broken)


def _fail_in_settle(monkeypatch):
    def broken(**kwargs):
        raise Boom("in the settle")

    async def abroken(**kwargs):
        raise Boom("in the settle")

    monkeypatch.setattr(settle, "proxy_call_settle", broken)
    monkeypatch.setattr(upstream, "proxy_call_settle", broken)
    monkeypatch.setattr(settle, "settle_success_fast", abroken)


FAILURES = {"before-upstream": _fail_before_upstream, "in-settle": _fail_in_settle}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("inject", FAILURES.values(), ids=FAILURES.keys())
def test_a_failure_at_any_step_leaves_nothing_held(caller, fake_upstream, live, monkeypatch, inject, stream):
    user, plaintext, _client = caller
    plan_configure(weights={"openai": 100})
    global_key_set("openai")
    inject(monkeypatch)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "n": 8, "max_tokens": 4000}
    if stream:
        body["stream"] = True

    for _ in range(3):
        response = _post(live, plaintext, json.dumps(body).encode())
        assert response.status_code >= 500 or stream  # a stream may have started before the failure
        if response.status_code >= 500:
            assert response.json()["error"]["code"]  # our JSON shape, not a traceback page

    _nothing_held(user.personal_workspace)


def test_a_failure_mid_stream_settles_what_was_sent(caller, fake_upstream, live, monkeypatch):
    """Content reached the client: the call is on the books (counted, flagged estimated)."""
    user, plaintext, _client = caller
    workspace = user.personal_workspace
    plan_configure(weights={"openai": 100})
    global_key_set("openai")
    fake_upstream.stream_chunks = 20
    fake_upstream.chunk_delay = 0.02  # one event per read: the failure comes before the usage
    _fail_mid_stream(monkeypatch)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}

    response = _post(live, plaintext, json.dumps(body).encode())

    assert response.status_code == 200
    _nothing_held(workspace)
    event = UsageEvent.objects.get(workspace=workspace)
    assert event.is_estimated and event.error_code == "stream_interrupted"
    assert event.completion_tokens > 0


# --- Provider text never carries a key ---------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("scope", ["operator", "workspace"])
def test_a_provider_quoting_our_key_never_reaches_the_client(
    caller, fake_upstream, live_asgi, caplog, provider, scope
):
    user, plaintext, _client = caller
    workspace = user.personal_workspace
    secret = f"sk-{scope}-{provider}-Zq8vXw3rT5yU7iOp9aSdFgHj"
    plan_configure(weights={provider: 100})
    if scope == "operator":
        global_key_set(provider, secret=secret)
    else:
        workspace_key_set(workspace, provider, secret=secret)
    fake_upstream.mode = "401_echo"
    caplog.set_level(logging.DEBUG)

    for stream in (False, True):
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        response = _post(live_asgi, plaintext, json.dumps(body).encode())
        assert response.status_code == 401
        assert "Incorrect API key provided" in response.json()["error"]["message"]
        assert secret not in response.text
        assert secret[:12] not in response.text

    assert fake_upstream.requests, "the provider was called"
    assert all(secret not in record.getMessage() for record in caplog.records)
    stored = json.dumps(list(UsageEvent.objects.values()), default=str)
    assert secret not in stored


def test_redaction_removes_token_shapes_and_echoed_prefixes():
    secret_remember("mistral0123456789abcdefghijkl")
    text = (
        "bad key mistral0123***kl; Bearer abc.def.ghi-123; sk-ant-api03-XYZxyz0123; "
        "AIzaSyA1234567890abcdefghijkLMN; gsk_abcdefgh12345678"
    )
    redacted = secrets_redact(text)
    for leaked in ("mistral0123", "abc.def", "sk-ant", "AIzaSy", "gsk_abcd"):
        assert leaked not in redacted
    assert redacted.startswith("bad key [redacted]")


# --- The daily cap holds under large requests --------------------------------------------------


def test_fifty_concurrent_large_tool_calls_never_spend_past_the_cap(caller, fake_upstream, live, settings):
    """The reservation counts tools (and every other input field), so the cap holds exactly."""
    user, plaintext, _client = caller
    settings.DAILY_BUDGET_USD = Decimal("0.2")
    plan_configure(weights={"openai": 100})
    global_key_set("openai")
    fake_upstream.prompt_tokens_per_byte = 0.25  # ~4 bytes a token, as tokenizers count JSON
    tools = [
        {
            "type": "function",
            "function": {
                "name": f"tool_{index}",
                "description": "Looks a thing up in the catalogue of parts " * 20,
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            },
        }
        for index in range(40)
    ]
    body = json.dumps(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "tools": tools, "max_tokens": 16}
    ).encode()

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda _: _post(live, plaintext, body).status_code, range(50)))

    assert statuses.count(200) >= 1
    assert set(statuses) <= {200, 503}
    _nothing_held(user.personal_workspace)
    spent = DailySpend.objects.get(day=timezone.now().date()).spent_usd
    assert Decimal(0) < spent <= Decimal("0.2")
    # The provider was paid for every call it served: nothing was served outside the books.
    assert UsageEvent.objects.filter(status_code=200).count() == statuses.count(200)


# --- A stream that fails before its first byte --------------------------------------------------


def test_a_stream_cut_before_its_first_byte_falls_back_and_charges_nothing(caller, fake_upstream, live):
    user, plaintext, _client = caller
    workspace = user.personal_workspace
    plan_configure(weights={"openrouter": 100}, fallback_provider="groq")
    global_key_set("openrouter")
    global_key_set("groq")
    fake_upstream.path_modes = {"/openrouter": "stream_reset"}
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}

    response = _post(live, plaintext, json.dumps(body).encode())

    assert response.status_code == 200
    assert response.headers["X-Tollgate-Provider"] == "groq"
    assert b"[DONE]" in response.content
    _nothing_held(workspace)
    event = UsageEvent.objects.get(workspace=workspace)
    assert (event.provider, event.is_fallback, event.status_code) == ("groq", True, 200)


def test_a_stream_cut_before_its_first_byte_is_an_error_the_books_agree_with(caller, fake_upstream, live):
    user, plaintext, _client = caller
    workspace = user.personal_workspace
    plan_configure(weights={"openrouter": 100})
    global_key_set("openrouter")
    fake_upstream.mode = "stream_reset"
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}

    response = _post(live, plaintext, json.dumps(body).encode())

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    _nothing_held(workspace)
    event = UsageEvent.objects.get(workspace=workspace)
    assert (event.status_code, event.total_tokens, event.cost_usd) == (502, 0, 0)
