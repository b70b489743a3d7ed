"""Secrets never reach logs, error bodies, admin pages or API responses.

The suite-wide capture (root conftest + tests/secret_registry.py) fails the whole run if any
registered secret appears in any log record; these tests prove the capture itself works and
check the other channels directly.
"""

from __future__ import annotations

import json
import logging

import pytest

from accounts.models import ApiKey
from accounts.tests.factories import api_key_for, global_key_for, personal_key_for
from tests.secret_registry import REGISTRY, LeakCaptureHandler, SecretRegistry

from .conftest import bearer_client


@pytest.fixture
def isolated_registry(monkeypatch):
    """A private registry, so deliberately leaked values never fail the real session check."""
    registry = SecretRegistry()
    monkeypatch.setattr("tests.secret_registry.REGISTRY", registry)
    logger = logging.getLogger("tollgate.leak-test")
    handler = LeakCaptureHandler()
    logger.addHandler(handler)
    logger.propagate = False  # keep the planted secrets away from the session capture
    yield registry, logger
    logger.removeHandler(handler)
    logger.propagate = True


def test_capture_finds_a_secret_in_message_extra_and_traceback(isolated_registry):
    registry, logger = isolated_registry
    registry.add(["sk-provider-in-message-0001", "whsec_in_extra_0002", "sk-in-traceback-0003"])

    logger.warning("calling upstream with key=sk-provider-in-message-0001")
    logger.info("webhook", extra={"secret": "whsec_in_extra_0002"})
    try:
        raise ValueError("bad key sk-in-traceback-0003")
    except ValueError:
        logger.exception("failed")
    logger.info("nothing secret here: sk-12…89")

    assert set(registry.leaks()) == {
        "sk-provider-in-message-0001",
        "whsec_in_extra_0002",
        "sk-in-traceback-0003",
    }


def test_capture_flags_any_full_customer_key_even_unregistered(isolated_registry):
    registry, logger = isolated_registry
    logger.info("Authorization: Bearer sk_agentai_" + "a" * 46)
    logger.info("prefix only sk_agentai_abcd is fine")

    assert list(registry.leaks()) == ["sk_agentai_" + "a" * 46]


@pytest.mark.django_db
def test_created_secrets_are_registered_automatically(user_a):
    _key, plaintext = api_key_for(user_a)
    personal_key_for(user_a, provider="openai", secret="sk-auto-registered-0123456789")

    assert plaintext in REGISTRY.secrets
    assert "sk-auto-registered-0123456789" in REGISTRY.secrets


@pytest.mark.django_db
def test_api_responses_show_only_prefixes_and_masks(user_a):
    client = bearer_client(user_a)
    created = client.post("/api/keys", {"name": "ci"}, format="json").json()
    put = client.put("/api/provider-keys/openai", {"key": "sk-openai-personal-secret-42"}, format="json")

    bodies = [
        put.content.decode(),
        client.get("/api/keys").content.decode(),
        client.get("/api/provider-keys").content.decode(),
        client.get("/api/proxy/usage").content.decode(),
    ]

    assert put.status_code == 200
    for body in bodies:
        assert created["key"] not in body and client.plaintext not in body
        assert "sk-openai-personal-secret-42" not in body
    assert "sk-op" in bodies[0]  # the masked form


@pytest.mark.django_db
def test_error_bodies_never_echo_the_secret_sent(user_a, settings, client):
    settings.STRIPE_WEBHOOK_SECRET = "whsec_never_echo_0123456789"
    wrong_key = api_key_for(user_a)[1][:-6] + "ZZZZZZ"  # well formed, bad checksum
    anonymous = bearer_client(user_a)
    anonymous.credentials(HTTP_AUTHORIZATION=f"Bearer {wrong_key}")
    owner = bearer_client(user_a)

    responses = [
        anonymous.get("/api/keys"),
        owner.put("/api/provider-keys/openai", {"key": "sk-has a space-secret"}, format="json"),
        owner.put("/api/provider-keys/openai", {"key": "sk-" + "x" * 600}, format="json"),
        client.post(
            "/api/billing/webhook",
            data=json.dumps({"id": "evt_1"}),
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE="t=1,v1=deadbeef",
        ),
    ]

    assert [r.status_code for r in responses] == [401, 400, 400, 400]
    for response in responses:
        body = response.content.decode()
        for secret in (wrong_key, "sk-has a space-secret", "x" * 600, "whsec_never_echo_0123456789"):
            assert secret not in body


@pytest.mark.django_db
def test_admin_pages_show_no_secret(user_a, staff, staff_session):
    key, plaintext = api_key_for(user_a)
    personal = personal_key_for(user_a, provider="openai", secret="sk-admin-page-personal-42")
    global_ = global_key_for(provider="deepseek", secret="sk-admin-page-global-43")

    pages = [
        "/admin/accounts/apikey/",
        f"/admin/accounts/apikey/{key.pk}/change/",
        "/admin/accounts/providercredential/",
        f"/admin/accounts/providercredential/{personal.pk}/change/",
        f"/admin/accounts/providercredential/{global_.pk}/change/",
    ]
    for page in pages:
        response = staff_session.get(page)
        assert response.status_code == 200, page
        body = response.content.decode()
        for secret in (plaintext, "sk-admin-page-personal-42", "sk-admin-page-global-43"):
            assert secret not in body, page
    assert ApiKey.objects.filter(pk=key.pk).exists()


@pytest.mark.django_db(transaction=True)  # the proxy's database work runs in its own threads
def test_a_proxied_call_logs_no_key_at_debug(user_a, catalog, fake_upstream, caplog):
    global_key_for(provider="deepseek", secret="sk-deepseek-operator-logs-0123")
    client = bearer_client(user_a)
    fake_upstream.mode = "500"  # the error path logs the most
    caplog.set_level(logging.DEBUG)

    response = client.post(
        "/api/proxy/deepseek/chat", {"messages": [{"role": "user", "content": "hi"}]}, format="json"
    )

    assert response.status_code == 502
    assert caplog.records  # something was logged, and none of it is a secret
    for secret in ("sk-deepseek-operator-logs-0123", client.plaintext):
        assert secret not in caplog.text
        assert secret not in response.content.decode()
