"""The provider-key check: one read-only request with the key, the provider's answer classified
and scrubbed, bounded in time; registered with accounts so the admin and the API use it."""

import pytest

from accounts import key_checks
from proxy import provider_check
from proxy.provider_check import provider_key_check

SECRET = "sk-checked-key-0123456789abcdef"


def test_an_accepted_key_is_ok_and_was_sent_as_the_provider_expects(fake_upstream):
    check = provider_key_check(provider="deepseek", secret=SECRET)
    assert (check.outcome, check.status) == ("ok", 200)
    assert check.message == "The provider accepted the key (1 models listed)."
    (asked,) = fake_upstream.requests
    assert asked["path"] == "/deepseek/models"
    assert asked["headers"]["Authorization"] == f"Bearer {SECRET}"


def test_anthropic_is_asked_natively_and_openrouter_on_its_key_endpoint(fake_upstream):
    assert provider_key_check(provider="anthropic", secret=SECRET).ok
    assert provider_key_check(provider="openrouter", secret=SECRET).ok
    anthropic, openrouter = fake_upstream.requests
    assert anthropic["path"] == "/anthropic/models"
    assert anthropic["headers"]["x-api-key"] == SECRET and "anthropic-version" in anthropic["headers"]
    assert "Authorization" not in anthropic["headers"]
    assert openrouter["path"] == "/openrouter/key"  # its /models answers anyone


@pytest.mark.parametrize("mode, status", [("401_echo", 401), ("403", 403), ("400", 400)])
def test_a_4xx_is_a_rejection_with_the_providers_message_scrubbed(fake_upstream, mode, status):
    fake_upstream.mode = mode
    check = provider_key_check(provider="groq", secret=SECRET)
    assert (check.outcome, check.status) == ("rejected", status)
    assert SECRET not in check.message and SECRET[:10] not in check.message
    if mode == "401_echo":
        assert check.message.startswith("Incorrect API key provided:")
        assert "[redacted]" in check.message


@pytest.mark.parametrize(
    "mode, status, kind", [("500", 500, "status"), ("503", 503, "status"), ("429", 429, "status")]
)
def test_a_failing_provider_is_unavailable_not_a_rejection(fake_upstream, mode, status, kind):
    fake_upstream.mode = mode
    check = provider_key_check(provider="mistral", secret=SECRET)
    assert (check.outcome, check.status, check.kind) == ("unavailable", status, kind)


def test_a_silent_provider_is_cut_at_the_check_timeout(fake_upstream, monkeypatch):
    monkeypatch.setattr(provider_check, "CHECK_TIMEOUT_SECONDS", 0.3)
    fake_upstream.mode, fake_upstream.sleep_seconds = "timeout", 1.0
    check = provider_key_check(provider="google", secret=SECRET)
    assert (check.outcome, check.kind) == ("unavailable", "timeout")


def test_an_unreachable_provider_is_unavailable(settings):
    settings.PROVIDER_BASE_URLS = {**settings.PROVIDER_BASE_URLS, "openai": "http://127.0.0.1:9"}
    check = provider_key_check(provider="openai", secret=SECRET)
    assert (check.outcome, check.kind) == ("unavailable", "connect")


def test_instantly_is_not_asked(fake_upstream):
    check = provider_key_check(provider="instantly", secret=SECRET)
    assert check.outcome == "skipped" and "Instantly" in check.message
    assert fake_upstream.requests == []


def test_the_proxy_registers_its_check_with_accounts(fake_upstream):
    fake_upstream.mode = "401_echo"
    assert key_checks.provider_key_check(provider="deepseek", secret=SECRET).outcome == "rejected"
