"""Bad input on every write endpoint: the documented 4xx in the JSON error shape, nothing written.

Limits: the proxy refuses bodies over PROXY_MAX_BODY_BYTES (1 MiB) and the usage report over
64 KiB with 413; every other endpoint is bounded by Django's DATA_UPLOAD_MAX_MEMORY_SIZE
(2.5 MiB), also answered 413.
"""

from __future__ import annotations

import json
import uuid

import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from .conftest import bearer_client

USAGE_TOKEN = "vaultai_billing_token_0123456789abcdef"
ORG_ID = str(uuid.uuid4())

# (method, path, a minimal valid body) for every endpoint that parses a request body.
WRITE_ENDPOINTS = [
    ("post", "/api/auth/register", {"email": "new@example.com", "password": "correct-horse-battery-42"}),
    ("post", "/api/auth/token", {"email": "alice@example.com", "password": "x"}),
    ("post", "/api/keys", {"name": "k"}),
    ("put", "/api/provider-keys/deepseek", {"key": "sk-abcdefgh12345678"}),
    ("post", "/api/credits/check", {"endpoint": "/api/ai/generate"}),
    ("post", "/api/credits/consume", {"endpoint": "/api/ai/generate", "idempotency_key": "k1"}),
    ("post", "/api/credits/buy", {"pack": "pack_100"}),
    ("post", "/api/billing/checkout", {"plan": "pro"}),
    ("post", "/api/billing/portal", {}),
    ("post", "/api/proxy/v1/chat/completions", {"model": "gpt-4o-mini", "messages": []}),
    ("post", "/api/proxy/deepseek/chat", {"messages": []}),
    ("post", "/api/proxy/instantly/send", {"to": "x@example.com"}),
    ("post", "/api/v2/chat", {"messages": []}),
    ("post", "/api/usage-report", {"organization_id": ORG_ID}),
]
PROXY_PATHS = {
    "/api/proxy/v1/chat/completions",
    "/api/proxy/deepseek/chat",
    "/api/proxy/instantly/send",
    "/api/v2/chat",
}
# Written rows that any of these requests could create.
WATCHED_MODELS = [
    "accounts.User",
    "accounts.ApiKey",
    "accounts.ProviderCredential",
    "credits.LedgerEntry",
    "credits.CreditHold",
    "billing.CheckoutSession",
    "billing.QuotaReservation",
    "billing.StripeEvent",
    "proxy.UsageEvent",
    "organizations.Organization",
    "organizations.UsageReport",
]


def _endpoint_params(endpoints):
    """The proxy's views run their database work in their own threads (connections), so their
    cases need committed data: a transactional test. The others run in a test transaction."""
    return [
        pytest.param(
            *endpoint,
            id=endpoint[1],
            marks=pytest.mark.django_db(transaction=endpoint[1] in PROXY_PATHS),
        )
        for endpoint in endpoints
    ]


def row_counts() -> dict[str, int]:
    return {label: apps.get_model(label).objects.count() for label in WATCHED_MODELS}


@pytest.fixture
def env(user_a, catalog, settings):
    settings.BILLING_API_TOKEN = [USAGE_TOKEN]
    # No request here should reach a provider; if one did, it fails fast (502), not hangs.
    settings.SANDBOX_PROVIDER_ENABLED = False
    settings.PROVIDER_BASE_URLS = {code: "http://127.0.0.1:9" for code in django_settings.PROVIDER_BASE_URLS}
    return bearer_client(user_a)


def send(client, method, path, data: bytes, content_type="application/json", **headers):
    if path == "/api/usage-report":
        client = Client()
        headers.setdefault("HTTP_AUTHORIZATION", f"Bearer {USAGE_TOKEN}")
    return getattr(client, method)(path, data=data, content_type=content_type, **headers)


def assert_error(response, status: int, codes: set[str] | None = None):
    assert response.status_code == status, (response.status_code, response.content[:300])
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code", "param"}
    if codes:
        assert error["code"] in codes


BAD_BODIES = {
    "malformed": (b'{"model": "x", ', 400, {"invalid_json", "invalid_request"}),
    "deeply_nested": (b"[" * 5_000 + b"]" * 5_000, 400, {"invalid_json", "invalid_request"}),
    "non_utf8": (b'{"name": "\xff\xfe\xfa"}', 400, {"invalid_json", "invalid_request"}),
    "not_an_object": (b"[1, 2, 3]", 400, {"invalid_json", "invalid_request"}),
    "bare_null": (b"null", 400, {"invalid_json", "invalid_request"}),
}


@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
@pytest.mark.parametrize(("method", "path", "_valid"), _endpoint_params(WRITE_ENDPOINTS))
def test_malformed_bodies_answer_400_and_write_nothing(env, method, path, _valid, kind):
    data, status, codes = BAD_BODIES[kind]
    before = row_counts()

    response = send(env, method, path, data)

    assert_error(response, status, codes)
    assert row_counts() == before


@pytest.mark.parametrize(("method", "path", "valid"), _endpoint_params(WRITE_ENDPOINTS))
def test_wrong_content_type_answers_415(env, method, path, valid):
    before = row_counts()

    response = send(env, method, path, json.dumps(valid).encode(), content_type="text/plain")

    assert_error(response, 415, {"unsupported_media_type"})
    assert row_counts() == before


def _limit(path: str) -> int:
    if path in PROXY_PATHS:
        return django_settings.PROXY_MAX_BODY_BYTES
    if path == "/api/usage-report":
        return 64 * 1024
    return django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _padded(valid: dict, size: int) -> bytes:
    """``valid`` plus an ignored padding field, exactly ``size`` bytes long."""
    body = json.dumps({**valid, "padding": ""}).encode()
    return json.dumps({**valid, "padding": "a" * (size - len(body))}).encode()


@pytest.mark.parametrize(("method", "path", "valid"), _endpoint_params(WRITE_ENDPOINTS))
def test_body_just_over_the_limit_is_413_and_just_under_is_not(env, method, path, valid):
    limit = _limit(path)
    before = row_counts()

    over = send(env, method, path, _padded(valid, limit + 1))

    assert_error(over, 413, {"payload_too_large"})
    assert row_counts() == before
    under = send(env, method, path, _padded(valid, limit - 1))
    assert under.status_code != 413
    assert under.status_code < 500, under.content[:300]


UNICODE_SAMPLES = [
    "名前🔑",
    "\u202eevil\u202c",
    "Ωmega\u0301",
    "a\u0000b",
    "🙂" * 300,
    "\ud800" * 0 + "x" * 5000,
]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "text", UNICODE_SAMPLES, ids=["cjk_emoji", "bidi", "combining", "nul", "emoji_long", "long"]
)
def test_unicode_in_text_fields_is_accepted_or_refused_cleanly(env, text):
    """Every free-text field: a 2xx or a 400 naming the field, never a 500."""
    cases = [
        ("post", "/api/keys", {"name": text}, "name"),
        ("put", "/api/provider-keys/deepseek", {"key": text}, "key"),
        ("post", "/api/auth/register", {"email": f"{text}@example.com", "password": text}, None),
        ("post", "/api/credits/consume", {"endpoint": text, "idempotency_key": text}, None),
        (
            "post",
            "/api/usage-report",
            {
                "organization_id": ORG_ID,
                "organization_name": text,
                "instance_url": text,
                "user_count": 3,
                "timestamp": timezone.now().isoformat(),
            },
            None,
        ),
    ]
    for method, path, body, field in cases:
        response = send(env, method, path, json.dumps(body).encode())
        assert response.status_code < 500, (path, response.status_code, response.content[:300])
        if response.status_code >= 400:
            assert_error(response, response.status_code)
            if field and response.status_code == 400:
                assert response.json()["error"]["param"] == field


@pytest.mark.django_db
def test_huge_headers_are_refused_or_ignored(env, user_a):
    before = row_counts()
    huge_key = "sk_agentai_" + "A" * 60_000

    response = APIClient().post(
        "/api/keys",
        data=b'{"name": "x"}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {huge_key}",
    )

    assert_error(response, 401, {"invalid_api_key"})
    response = send(env, "post", "/api/keys", b'{"name": "x"}', HTTP_X_REQUEST_ID="r" * 60_000)
    assert response.status_code == 201
    assert len(response["X-Request-ID"]) <= 64  # a wild request id is replaced, never echoed
    assert row_counts()["accounts.ApiKey"] == before["accounts.ApiKey"] + 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/billing/success/?session_id=a%00b",
        "/dashboard/?status=%00",
        "/api/provider-keys/deep%00seek",
        "/api/keys?x=%00",
        "/api/proxy/v1/models?x=%00",
    ],
)
def test_a_nul_character_in_a_url_is_a_clean_400(client, url):
    """No text column stores NUL: a URL carrying one is refused at the door, never a 500."""
    response = client.get(url)
    assert response.status_code == 400
    if url.startswith("/api/"):
        assert response.json()["error"]["code"] == "invalid_request"
