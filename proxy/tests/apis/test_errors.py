"""Every client-reachable error answers the JSON error shape with the right status."""

import time

import pytest
from django.utils import timezone

from accounts.models import ApiKey
from accounts.services import api_key_revoke
from proxy.models import RateLimitedDay, UsageEvent

from ..factories import global_key_set, plan_configure

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}


@pytest.mark.parametrize(
    "header",
    [None, "Bearer nope", "Bearer sk_agentai_short", "Token abc", "Bearer sk_agentai_" + "A" * 46],
)
def test_missing_malformed_or_unknown_key_is_401(api_client, header, free_plan):
    if header:
        api_client.credentials(HTTP_AUTHORIZATION=header)

    response = api_client.post(URL, BODY, format="json")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_revoked_key_is_401_on_next_use(caller, fake_upstream):
    user, _plaintext, client = caller
    workspace = user.personal_workspace
    api_key_revoke(workspace=workspace, key_id=ApiKey.objects.get(created_by=user).pk)

    assert client.get("/api/proxy/v1/models").status_code == 401


def test_invalid_json_is_400(caller):
    _user, _plaintext, client = caller

    response = client.post(URL, data=b"{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_body_over_the_limit_is_413_before_parsing(caller, settings):
    settings.PROXY_MAX_BODY_BYTES = 100
    _user, _plaintext, client = caller

    response = client.post(URL, data=b"{" + b" " * 200, content_type="application/json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-4o"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "user", "content": 42}]}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 999_999}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "model": 7}, "model"),
    ],
)
def test_bad_input_is_400_with_param(caller, body, param):
    _user, _plaintext, client = caller

    response = client.post(URL, body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param


def test_non_object_body_is_400(caller):
    _user, _plaintext, client = caller

    response = client.post(URL, [1, 2], format="json")

    assert response.status_code == 400


def test_quota_exhausted_is_429_with_retry_after_quota_block_and_upsell(caller, fake_upstream):
    user, _plaintext, client = caller
    plan_configure(weights={"groq": 100}, limits={"llm_tokens": 100, "requests": None, "emails": 0})
    global_key_set("groq")

    response = client.post(URL, {**BODY, "max_tokens": 200}, format="json")

    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["quota"]["limit"] == 100
    assert error["pricingUrl"] == "/pricing/"
    assert error["creditsUrl"] == "/credits/"
    assert int(response["Retry-After"]) > 0
    assert fake_upstream.requests == []
    assert UsageEvent.objects.get().error_code == "quota_exceeded"


def test_daily_requests_quota_is_enforced(midday, caller, fake_upstream):
    plan_configure(weights={"groq": 100}, limits={"llm_tokens": 100_000, "requests": 3, "emails": 0})
    global_key_set("groq")
    _user, _plaintext, client = caller

    statuses = [client.post(URL, BODY, format="json").status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]


def test_rate_limit_is_429_with_retry_after_and_headers(caller, fake_upstream):
    plan_configure(weights={"groq": 100}, rate_limit_per_minute=2)
    global_key_set("groq")
    _user, _plaintext, client = caller
    if time.time() % 60 > 55:  # the window is a calendar minute: do not straddle its end
        time.sleep(60 - time.time() % 60 + 0.1)

    responses = [client.get("/api/proxy/v1/models") for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[2].json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(responses[2]["Retry-After"]) <= 60
    assert [r["X-RateLimit-Remaining"] for r in responses] == ["1", "0", "0"]
    assert all(r["X-RateLimit-Limit"] == "2" for r in responses)


def test_a_minute_past_the_rate_limit_is_counted_once_for_the_abuse_list(caller, fake_upstream):
    """Refused calls never reach the rollups; the minute they were refused in is recorded once,
    however many calls it refused."""
    plan_configure(weights={"groq": 100}, rate_limit_per_minute=2)
    user, _plaintext, client = caller
    workspace = user.personal_workspace
    if time.time() % 60 > 50:  # the window is a calendar minute: do not straddle its end
        time.sleep(60 - time.time() % 60 + 0.1)

    statuses = [client.get("/api/proxy/v1/models").status_code for _ in range(6)]

    assert statuses == [200, 200, 429, 429, 429, 429]
    [day] = RateLimitedDay.objects.filter(workspace=workspace)
    assert (day.day, day.minutes) == (timezone.now().date(), 1)


def test_method_not_allowed_is_405_json(caller):
    _user, _plaintext, client = caller

    response = client.get(URL)

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "path",
    [
        URL,
        "/api/proxy/deepseek/chat",
        "/api/v2/chat",
        "/api/proxy/instantly/send",
        "/api/proxy/usage",
        "/api/proxy/v1/models",
    ],
)
def test_options_answers_json_metadata_not_a_500(caller, path):
    _user, _plaintext, client = caller

    response = client.options(path)

    assert response.status_code == 200, response.content
    assert response.json()["parses"] == ["application/json"]
    assert response["X-RateLimit-Limit"]


def test_options_without_a_key_is_401(api_client, free_plan):
    response = api_client.options(URL)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    "path", [URL, "/api/proxy/deepseek/chat", "/api/v2/chat", "/api/proxy/instantly/send"]
)
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx", ""]
)
def test_non_json_content_type_is_415_and_records_nothing(caller, fake_upstream, path, content_type):
    plan_configure(weights={"groq": 100})
    global_key_set("groq")
    _user, _plaintext, client = caller
    body = b'{"messages": [{"role": "user", "content": "hi"}], "prompt": "hi", "to": "a@example.com"}'

    response = client.generic("POST", path, body, content_type=content_type)

    assert response.status_code == 415, response.content
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert set(error) >= {"message", "type", "param"}
    assert fake_upstream.requests == []
    assert UsageEvent.objects.count() == 0


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_json_with_parameters_or_any_case_is_accepted(caller, fake_upstream, content_type):
    plan_configure(weights={"groq": 100})
    global_key_set("groq")
    _user, _plaintext, client = caller

    response = client.post(
        URL, data=b'{"messages": [{"role": "user", "content": "hi"}]}', content_type=content_type
    )

    assert response.status_code == 200, response.content
