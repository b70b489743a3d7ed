"""Schema fuzzing with schemathesis over every operation of ``/api/schema/``.

Each operation is called with generated (valid and invalid) input as an ordinary user (Bearer
customer key + session cookie) and as staff (DRF token + session cookie): no answer may be a
500, every error under the API is the documented JSON shape, and documented 2xx bodies match
their schema. The default suite runs a few examples per operation; ``make fuzz`` sets
``TOLLGATE_FUZZ_EXAMPLES=500``.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.test import Client
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from rest_framework.authtoken.models import Token
from schemathesis.specs.openapi.checks import response_schema_conformance

from accounts.tests.factories import global_key_for
from config.wsgi import application

from .conftest import bearer_client

EXAMPLES = int(os.environ.get("TOLLGATE_FUZZ_EXAMPLES", "6"))
USAGE_TOKEN = "vaultai_billing_token_fuzz_0123456789"


def _schema_load():
    """The served schema, loaded through the WSGI app at collection (the view needs no database)."""
    return schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture
def api_schema(transactional_db, catalog, fake_upstream, settings):
    """Transactional: the proxy's async views run their database work in their own threads."""
    settings.BILLING_API_TOKEN = [USAGE_TOKEN]
    settings.STRIPE_WEBHOOK_SECRET = "whsec_fuzz_0123456789abcdef"
    settings.RATELIMIT_ENABLE = True


schema = _schema_load()


DOCUMENTED_5XX = {"upstream_error", "no_provider_available", "service_unavailable", "upstream_timeout"}


def no_500(ctx, response, case):
    """500 is never an answer to client input; 502/503/504 are, with their documented codes
    (upstream failed, nothing configured/available)."""
    assert response.status_code != 500, f"500 for {case.method} {case.formatted_path}: {response.text[:300]}"
    if response.status_code > 500:
        code = (response.json().get("error") or {}).get("code")
        assert code in DOCUMENTED_5XX, f"{response.status_code} with undocumented code {code!r}"
    return None


# Routes that answer errors in another API's documented shape (Anthropic's, for its SDK).
ANTHROPIC_SHAPED = {"/api/proxy/v1/messages"}


def error_shape(ctx, response, case):
    """Every 4xx/5xx under /api/ is ``{"error": {message, type, code, param}}``; Anthropic's
    Messages route answers Anthropic's ``{"type": "error", "error": {type, message, code}}``."""
    if response.status_code < 400 or not case.formatted_path.startswith("/api/"):
        return None
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"error body is not the documented shape: {response.text[:200]}"
    expected = {"message", "type", "code", "param"}
    if case.formatted_path in ANTHROPIC_SHAPED:
        assert body.get("type") == "error", f"not Anthropic's error shape: {response.text[:200]}"
        expected = {"message", "type", "code"}
    missing = expected - set(error)
    assert not missing, f"error body misses {missing}: {response.text[:200]}"
    return None


def _identity(persona: str, request) -> dict:
    """Headers and cookies of an ordinary user or of staff."""
    user = request.getfixturevalue("staff" if persona == "staff" else "user_a")
    for provider in ("deepseek", "openai"):
        global_key_for(provider=provider, secret=f"sk-operator-{provider}-fuzz-0123456789")
    session = Client()
    session.force_login(user)
    cookies = {"sessionid": session.cookies["sessionid"].value}
    if persona == "staff":
        token, _ = Token.objects.get_or_create(user=user)
        return {"headers": {"Authorization": f"Token {token.key}"}, "cookies": cookies}
    return {"headers": {"Authorization": f"Bearer {bearer_client(user).plaintext}"}, "cookies": cookies}


@pytest.fixture
def user_identity(api_schema, request):
    return _identity("user", request)


@pytest.fixture
def staff_identity(api_schema, request):
    return _identity("staff", request)


FUZZ_SETTINGS = hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 20,  # the CI run is reproducible; `make fuzz` explores
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)


def _call_and_check(case, identity: dict) -> None:
    headers = dict(identity["headers"])
    if case.path == "/api/usage-report":
        headers["Authorization"] = f"Bearer {USAGE_TOKEN}"
    # A real server always sets REMOTE_ADDR (the auth rate limit is keyed on it).
    response = case.call(
        headers=headers, cookies=identity["cookies"], environ_base={"REMOTE_ADDR": "127.0.0.1"}
    )
    case.validate_response(
        response, checks=[no_500, response_schema_conformance], additional_checks=[error_shape]
    )


@pytest.mark.fuzz
@schema.parametrize()
@FUZZ_SETTINGS
def test_fuzz_as_user(case, user_identity):
    _call_and_check(case, user_identity)


@pytest.mark.fuzz
@schema.parametrize()
@FUZZ_SETTINGS
def test_fuzz_as_staff(case, staff_identity):
    _call_and_check(case, staff_identity)
