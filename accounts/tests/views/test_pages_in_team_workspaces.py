"""The key and provider-key pages act on the workspace chosen in the switcher (the session),
with the member's role: buttons follow it, and the doors check it."""

import pytest

from accounts.models import ProviderCredential, Role
from accounts.tenancy import SESSION_WORKSPACE_KEY
from accounts.tests.factories import api_key_for, member_add, team_workspace, workspace_key_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(user):
    return team_workspace(owner=user, name="Acme")


def _login_in(client, member, workspace):
    client.force_login(member)
    session = client.session
    session[SESSION_WORKSPACE_KEY] = workspace.pk
    session.save()
    return client


def test_a_developer_cannot_revoke_or_rotate_another_members_key_from_the_page(client, team, user):
    owners_key, _ = api_key_for(user, workspace=team, name="owner's")
    developer = member_add(team, role=Role.DEVELOPER)
    own_key, _ = api_key_for(developer, workspace=team, name="mine")
    _login_in(client, developer, team)

    assert client.post(f"/dashboard/keys/{owners_key.pk}/revoke/").status_code == 403
    assert client.post(f"/dashboard/keys/{owners_key.pk}/rotate/").status_code == 403
    owners_key.refresh_from_db()
    assert owners_key.revoked_at is None and owners_key.expires_at is None

    assert client.post(f"/dashboard/keys/{own_key.pk}/revoke/").status_code == 302
    own_key.refresh_from_db()
    assert own_key.revoked_at is not None


def test_an_admin_revokes_a_members_key_from_the_page(client, team, user):
    developer = member_add(team, role=Role.DEVELOPER)
    developers_key, _ = api_key_for(developer, workspace=team)
    _login_in(client, member_add(team, role=Role.ADMIN), team)

    assert client.post(f"/dashboard/keys/{developers_key.pk}/revoke/").status_code == 302
    developers_key.refresh_from_db()
    assert developers_key.revoked_at is not None


def test_a_key_created_from_the_page_belongs_to_the_chosen_workspace(client, team):
    developer = member_add(team, role=Role.DEVELOPER)
    _login_in(client, developer, team)
    assert client.post("/dashboard/keys/", {"name": "team key"}).status_code == 302
    assert [(k.workspace, k.created_by) for k in team.api_keys.all()] == [(team, developer)]


def test_the_profile_shows_and_changes_provider_keys_by_role(client, team, user):
    workspace_key_for(team, secret="sk-team-shared-key-0123456789")
    developer = member_add(team, role=Role.DEVELOPER)

    _login_in(client, developer, team)
    page = client.get("/accounts/profile/")
    assert page.status_code == 200 and b"sk-te" not in page.content
    refused = client.post(
        "/accounts/profile/", {"provider": "deepseek", "scope": "workspace", "action": "delete"}
    )
    assert refused.status_code == 403
    assert ProviderCredential.objects.filter(workspace=team).exists()

    _login_in(client, user, team)  # the owner
    page = client.get("/accounts/profile/")
    assert b"Provider keys of Acme" in page.content and b"sk-te\xe2\x80\xa689" in page.content
    client.post("/accounts/profile/", {"provider": "deepseek", "scope": "workspace", "action": "delete"})
    assert not ProviderCredential.objects.filter(workspace=team).exists()


def test_the_keys_page_shows_each_creator_and_the_buttons_the_role_allows(client, team, user):
    developer = member_add(team, role=Role.DEVELOPER)
    api_key_for(user, workspace=team, name="owner-key")
    own, _ = api_key_for(developer, workspace=team, name="dev-key")

    def page_for(member) -> str:
        client.force_login(member)
        session = client.session
        session[SESSION_WORKSPACE_KEY] = team.pk
        session.save()
        return client.get("/keys/").content.decode()

    as_developer = page_for(developer)
    assert "dev-key" in as_developer and "owner-key" not in as_developer  # their own keys only
    assert f"by {developer.email}" in as_developer  # under "Created"
    assert as_developer.count("/revoke/") == 1 and f"/dashboard/keys/{own.pk}/revoke/" in as_developer

    as_owner = page_for(user)
    assert "dev-key" in as_owner and "owner-key" in as_owner
    assert as_owner.count("/revoke/") == 2
    assert f"by {developer.email}" in as_owner and f"by {user.email}" in as_owner
