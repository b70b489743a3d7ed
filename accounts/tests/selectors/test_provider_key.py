import pytest
from django.contrib.auth.models import AnonymousUser

from accounts.providers import PROVIDERS
from accounts.selectors import (
    provider_key_get,
    provider_key_source_get,
    provider_key_status_list,
)
from accounts.tests.factories import global_key_for, personal_key_for
from core.exceptions import ApiError

pytestmark = pytest.mark.django_db

PERSONAL = "sk-personal-1234567890"
GLOBAL = "sk-global-abcdefghij"
ENV = "sk-from-environment-42"


@pytest.mark.parametrize(
    ("has_personal", "has_global", "has_env", "expected_source", "expected_secret"),
    [
        (True, True, True, "personal", PERSONAL),
        (True, False, False, "personal", PERSONAL),
        (True, False, True, "personal", PERSONAL),
        (False, True, True, "global", GLOBAL),
        (False, True, False, "global", GLOBAL),
        (False, False, True, "env", ENV),
        (False, False, False, "none", None),
    ],
)
def test_priority_is_personal_then_global_then_env_then_none(
    user, monkeypatch, has_personal, has_global, has_env, expected_source, expected_secret
):
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    if has_personal:
        personal_key_for(user, secret=PERSONAL)
    if has_global:
        global_key_for(secret=GLOBAL)
    if has_env:
        monkeypatch.setenv("DEEPSEEK_API_KEY", ENV)

    found = provider_key_get(user=user, provider="deepseek")
    assert provider_key_source_get(user=user, provider="deepseek") == expected_source
    if expected_secret is None:
        assert found is None
    else:
        assert (found.secret, found.source) == (expected_secret, expected_source)


def test_another_users_personal_key_is_never_used(user, other_user, monkeypatch):
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    personal_key_for(other_user, secret=PERSONAL)
    assert provider_key_get(user=user, provider="deepseek") is None
    global_key_for(secret=GLOBAL)
    assert provider_key_get(user=user, provider="deepseek").source == "global"


def test_anonymous_user_gets_global_only(monkeypatch):
    global_key_for(secret=GLOBAL)
    assert provider_key_get(user=AnonymousUser(), provider="deepseek").secret == GLOBAL


def test_hot_path_costs_at_most_one_query(user, django_assert_num_queries):
    personal_key_for(user, secret=PERSONAL)
    global_key_for(secret=GLOBAL)
    with django_assert_num_queries(1):
        assert provider_key_get(user=user, provider="deepseek").source == "personal"
    with django_assert_num_queries(1):
        assert provider_key_source_get(user=user, provider="deepseek") == "personal"


def test_unknown_provider_is_404_without_a_query(user, django_assert_num_queries):
    with django_assert_num_queries(0), pytest.raises(ApiError) as exc:
        provider_key_get(user=user, provider="bogus")
    assert exc.value.status_code == 404


def test_secret_is_not_in_the_repr(user):
    personal_key_for(user, secret=PERSONAL)
    found = provider_key_get(user=user, provider="deepseek")
    assert PERSONAL not in repr(found)


def test_status_list_covers_every_provider_in_one_query(
    user, other_user, monkeypatch, django_assert_num_queries
):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("GROQ_API_KEY", "gsk-env-key-0000")
    personal_key_for(user, provider="deepseek", secret=PERSONAL)
    personal_key_for(other_user, provider="openai", secret="sk-other-users-key-1")
    global_key_for(provider="mistral", secret=GLOBAL)

    with django_assert_num_queries(1):
        statuses = {s.provider: s for s in provider_key_status_list(user=user)}

    assert set(statuses) == set(PROVIDERS)
    assert statuses["deepseek"].personal_masked == "sk-pe…90"
    assert statuses["deepseek"].source == "personal"
    assert statuses["openai"].personal_configured is False and statuses["openai"].source == "none"
    assert statuses["mistral"].source == "global"
    assert statuses["groq"].source == "env"
