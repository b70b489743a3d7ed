import pytest

from accounts.models import Role
from accounts.providers import PROVIDERS
from accounts.selectors import (
    api_key_identity_get,
    provider_key_get,
    provider_key_source_get,
    provider_key_status_list,
)
from accounts.tests.factories import (
    api_key_for,
    global_key_for,
    member_add,
    personal_key_for,
    team_workspace,
    workspace_key_for,
)
from core.exceptions import ApiError

pytestmark = pytest.mark.django_db

PERSONAL = "sk-personal-1234567890"
GLOBAL = "sk-global-abcdefghij"
ENV = "sk-from-environment-42"


@pytest.mark.parametrize(
    ("has_personal", "has_global", "has_env", "expected_source", "expected_secret"),
    [
        (True, True, True, "workspace", PERSONAL),
        (True, False, False, "workspace", PERSONAL),
        (True, False, True, "workspace", PERSONAL),
        (False, True, True, "global", GLOBAL),
        (False, True, False, "global", GLOBAL),
        (False, False, True, "env", ENV),
        (False, False, False, "none", None),
    ],
)
def test_priority_is_the_workspaces_then_global_then_env_then_none(
    user, monkeypatch, has_personal, has_global, has_env, expected_source, expected_secret
):
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    if has_personal:
        personal_key_for(user, secret=PERSONAL)
    if has_global:
        global_key_for(secret=GLOBAL)
    if has_env:
        monkeypatch.setenv("DEEPSEEK_API_KEY", ENV)

    workspace = user.personal_workspace
    found = provider_key_get(workspace=workspace, provider="deepseek")
    assert provider_key_source_get(workspace=workspace, provider="deepseek") == expected_source
    assert provider_key_get(workspace_id=workspace.pk, provider="deepseek") == found
    if expected_secret is None:
        assert found is None
    else:
        assert (found.secret, found.source) == (expected_secret, expected_source)


def test_another_workspaces_key_is_never_used(user, other_user, monkeypatch):
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    personal_key_for(other_user, secret=PERSONAL)
    assert provider_key_get(workspace=user.personal_workspace, provider="deepseek") is None
    global_key_for(secret=GLOBAL)
    assert provider_key_get(workspace=user.personal_workspace, provider="deepseek").source == "global"


def test_without_a_workspace_only_the_operators_key_is_used(user, monkeypatch):
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    personal_key_for(user, secret=PERSONAL)
    global_key_for(secret=GLOBAL)
    assert provider_key_get(provider="deepseek").secret == GLOBAL


def test_a_key_an_admin_sets_serves_every_members_proxy_keys(user, other_user, monkeypatch):
    """The bring-your-own key belongs to the workspace: whoever set it, each member's proxy key
    (resolved to its workspace, as the proxy does) calls the provider with it."""
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    global_key_for(secret=GLOBAL)
    team = team_workspace(owner=user)
    admin = member_add(team, role=Role.ADMIN)
    member_add(team, role=Role.DEVELOPER, user=other_user)
    workspace_key_for(team, secret="sk-team-byok-0123456789", actor=admin)
    identities = [
        api_key_identity_get(raw_key=api_key_for(member, workspace=team)[1])
        for member in (user, other_user, admin)
    ]

    for identity in identities:
        found = provider_key_get(workspace_id=identity.workspace_id, provider="deepseek")
        assert (found.secret, found.source) == ("sk-team-byok-0123456789", "workspace")
    # Their personal workspaces still use the operator's key.
    assert provider_key_get(workspace=other_user.personal_workspace, provider="deepseek").secret == GLOBAL


def test_workspace_and_workspace_id_must_agree(user):
    with pytest.raises(ValueError):
        provider_key_get(
            workspace=user.personal_workspace,
            workspace_id=user.personal_workspace.pk + 1,
            provider="deepseek",
        )


def test_hot_path_costs_at_most_one_query(user, django_assert_num_queries):
    personal_key_for(user, secret=PERSONAL)
    global_key_for(secret=GLOBAL)
    workspace = user.personal_workspace
    with django_assert_num_queries(1):
        assert provider_key_get(workspace=workspace, provider="deepseek").source == "workspace"
    with django_assert_num_queries(1):
        assert provider_key_source_get(workspace=workspace, provider="deepseek") == "workspace"


def test_unknown_provider_is_404_without_a_query(user, django_assert_num_queries):
    with django_assert_num_queries(0), pytest.raises(ApiError) as exc:
        provider_key_get(workspace=user.personal_workspace, provider="bogus")
    assert exc.value.status_code == 404


def test_secret_is_not_in_the_repr(user):
    personal_key_for(user, secret=PERSONAL)
    found = provider_key_get(workspace=user.personal_workspace, provider="deepseek")
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
        statuses = {s.provider: s for s in provider_key_status_list(workspace=user.personal_workspace)}

    assert set(statuses) == set(PROVIDERS)
    assert statuses["deepseek"].workspace_masked == "sk-pe…90"
    assert statuses["deepseek"].source == "workspace"
    assert statuses["openai"].workspace_configured is False and statuses["openai"].source == "none"
    assert statuses["mistral"].source == "global"
    assert statuses["groq"].source == "env"
