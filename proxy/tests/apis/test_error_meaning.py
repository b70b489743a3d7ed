"""Errors keep their meaning through the proxy (issue 25, part 6): a provider's 4xx keeps its
code and param, a provider's 429 falls back then answers 429 with its Retry-After, every
Retry-After is rounded up, and ``x-should-retry`` tells the SDK what is worth resending."""

import time

import openai
import pytest

from accounts.selectors import auth_failure_throttle_error
from billing.models import UsageCounter
from core.exceptions import retry_after_seconds
from proxy.ratelimit import RateLimitState, rate_limit_error, token_limit_headers

from ..factories import global_key_set, plan_configure

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}
SECRET = "sk-operator-0123456789abcdef"


def _chat_requests(fake) -> list[dict]:
    return [r for r in fake.requests if r["path"].endswith("/chat/completions")]


def test_provider_4xx_keeps_code_param_and_provider_and_is_scrubbed(caller, fake_upstream):
    user, _plaintext, client = caller
    plan_configure(weights={"groq": 100})
    global_key_set("groq", secret=SECRET)
    fake_upstream.mode = "400_model"

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert error["type"] == "invalid_request_error"
    assert error["provider"] == "groq"
    assert "does not exist" in error["message"]
    assert SECRET not in response.content.decode()
    assert response["x-should-retry"] == "false"


def test_provider_429_falls_back_to_the_next_provider(caller, fake_upstream):
    _user, _plaintext, client = caller
    plan_configure(weights={"groq": 100}, fallback_provider="openrouter")
    global_key_set("groq")
    global_key_set("openrouter")
    fake_upstream.path_modes = {"/groq": "429"}
    fake_upstream.retry_after = "3"

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 200
    assert response.json()["provider"] == "openrouter"
    assert response.json()["fallback"] is True


def test_every_provider_429_answers_upstream_rate_limited_with_retry_after_rounded_up(caller, fake_upstream):
    _user, _plaintext, client = caller
    plan_configure(weights={"groq": 100, "openrouter": 50})
    global_key_set("groq")
    global_key_set("openrouter")
    fake_upstream.mode = "429"
    fake_upstream.retry_after = "1.2"

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "upstream_rate_limited"
    assert response["Retry-After"] == "2"
    assert response["x-should-retry"] == "true"
    assert len(_chat_requests(fake_upstream)) == 2

    assert all(c.reserved == 0 for c in UsageCounter.objects.all())


def test_quota_exceeded_says_do_not_retry_and_sends_the_token_trio(caller, fake_upstream):
    _user, _plaintext, client = caller
    plan_configure(weights={"groq": 100}, limits={"llm_tokens": 100, "requests": None, "emails": 0})
    global_key_set("groq")

    response = client.post(URL, {**BODY, "max_tokens": 200}, format="json")

    assert response.status_code == 429
    assert response["x-should-retry"] == "false"
    assert response["x-ratelimit-limit-tokens"] == "100"
    assert response["x-ratelimit-reset-tokens"].endswith("s")


def test_success_carries_openai_header_names_beside_ours(caller, fake_upstream):
    _user, _plaintext, client = caller
    plan_configure(weights={"groq": 100}, rate_limit_per_minute=7)
    global_key_set("groq")

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 200
    assert response["x-ratelimit-limit-requests"] == response["X-RateLimit-Limit"] == "7"
    assert response["x-ratelimit-remaining-requests"] == response["X-RateLimit-Remaining"]
    assert 1 <= int(response["x-ratelimit-reset-requests"].removesuffix("s")) <= 60
    quota = response.json()["quota"]
    assert response["x-ratelimit-limit-tokens"] == str(quota["limit"])
    assert response["x-ratelimit-remaining-tokens"] == str(quota["remaining"])


def test_rate_limit_retry_after_is_rounded_up():
    state = RateLimitState(limit=2, remaining=0, reset_at=1_000_060, exceeded=True, count=3)

    error = rate_limit_error(state, now=1_000_033.2)  # 26.8 s left

    assert error.headers["Retry-After"] == "27"
    assert error.headers["x-ratelimit-reset-requests"] == "27s"
    assert error.as_response()["x-should-retry"] == "true"
    assert retry_after_seconds(0.01) == 1
    assert retry_after_seconds(5.0) == 5


def test_auth_failure_throttle_retry_after_is_rounded_up():
    assert auth_failure_throttle_error(reset_at=120, now=93.2).headers["Retry-After"] == "27"


def test_token_trio_needs_a_limit():
    assert token_limit_headers({"used": 0, "limit": None, "remaining": None, "resetDate": None}) == {}
    assert token_limit_headers(None) == {}


@pytest.fixture
def sdk_server(caller, fake_upstream, live_asgi):
    user, plaintext, _client = caller
    global_key_set("groq")
    return plaintext, live_asgi


def test_sdk_sees_rate_limit_error_and_retries_upstream_429_per_retry_after(sdk_server, fake_upstream):
    plaintext, url = sdk_server
    plan_configure(weights={"groq": 100})
    fake_upstream.mode = "429"
    fake_upstream.retry_after = "0.1"  # the SDK waits 1 s (rounded up) between its tries
    client = openai.OpenAI(base_url=f"{url}/api/proxy/v1", api_key=plaintext, max_retries=2)

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(**BODY)

    assert caught.value.body["code"] == "upstream_rate_limited"
    assert len(_chat_requests(fake_upstream)) == 3  # one per SDK try: it was told to retry


def test_sdk_does_not_retry_quota_exceeded(sdk_server, fake_upstream):
    plaintext, url = sdk_server
    plan_configure(weights={"groq": 100}, limits={"llm_tokens": 10, "requests": None, "emails": 0})
    client = openai.OpenAI(base_url=f"{url}/api/proxy/v1", api_key=plaintext, max_retries=2)
    started = time.monotonic()

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(**BODY)

    assert caught.value.body["code"] == "quota_exceeded"
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert time.monotonic() - started < 5  # no wait of Retry-After (until next month)
    assert _chat_requests(fake_upstream) == []


def test_sdk_sees_the_providers_model_not_found(sdk_server, fake_upstream):
    plaintext, url = sdk_server
    plan_configure(weights={"groq": 100})
    fake_upstream.mode = "400_model"
    client = openai.OpenAI(base_url=f"{url}/api/proxy/v1", api_key=plaintext, max_retries=2)

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**BODY)

    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    assert len(_chat_requests(fake_upstream)) == 1
