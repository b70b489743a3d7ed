"""The key and provider-key endpoints in a shared workspace (``X-Workspace``): developers see
and manage the keys they created, owners and admins every key; the workspace's provider keys
are for owners and admins only."""

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey, AuditEvent, ProviderCredential, Role
from accounts.selectors import api_key_identity_get
from accounts.tests.factories import api_key_for, member_add, team_workspace, workspace_key_for

pytestmark = pytest.mark.django_db

SECRET = "sk-team-deepseek-0123456789"


@pytest.fixture
def team(user):
    return team_workspace(owner=user, name="Acme")


@pytest.fixture
def developer(team):
    return member_add(team, role=Role.DEVELOPER)


@pytest.fixture
def admin(team):
    return member_add(team, role=Role.ADMIN)


def _client(user, workspace) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    client.credentials(HTTP_X_WORKSPACE=str(workspace.pk))
    return client


def _assert_forbidden(response, required_role):
    assert response.status_code == 403
    error = response.json()["error"]
    assert (error["code"], error["required_role"]) == ("forbidden", required_role)


def test_a_developer_cannot_revoke_or_rotate_another_members_key(team, developer, admin):
    admins_key, plaintext = api_key_for(admin, workspace=team)
    client = _client(developer, team)

    _assert_forbidden(client.delete(f"/api/keys/{admins_key.pk}"), ["owner", "admin"])
    _assert_forbidden(client.post(f"/api/keys/{admins_key.pk}/rotate", {}, format="json"), ["owner", "admin"])

    admins_key.refresh_from_db()
    assert admins_key.revoked_at is None and admins_key.expires_at is None
    assert api_key_identity_get(raw_key=plaintext) is not None
    assert ApiKey.objects.filter(workspace=team).count() == 1


def test_a_developer_revokes_and_rotates_their_own_keys(team, developer):
    to_revoke, _ = api_key_for(developer, workspace=team)
    to_rotate, _ = api_key_for(developer, workspace=team)
    client = _client(developer, team)

    assert client.delete(f"/api/keys/{to_revoke.pk}").status_code == 204
    rotated = client.post(f"/api/keys/{to_rotate.pk}/rotate", {}, format="json")
    assert rotated.status_code == 201
    assert rotated.json()["previous"]["created_by"] == developer.email


def test_an_admin_revokes_and_rotates_any_members_key(
    team, developer, admin, django_capture_on_commit_callbacks
):
    to_revoke, revoked_plaintext = api_key_for(developer, workspace=team)
    to_rotate, _ = api_key_for(developer, workspace=team)
    client = _client(admin, team)

    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/keys/{to_revoke.pk}").status_code == 204
    rotated = client.post(f"/api/keys/{to_rotate.pk}/rotate", {}, format="json")

    assert api_key_identity_get(raw_key=revoked_plaintext) is None
    assert rotated.status_code == 201
    new_key = ApiKey.objects.get(pk=rotated.json()["id"])
    assert (new_key.workspace, new_key.created_by) == (team, developer)  # still the developer's key
    revoked = AuditEvent.objects.get(action="api_key.revoked")
    assert (revoked.actor, revoked.workspace, revoked.target) == (admin, team, f"api_key:{to_revoke.pk}")


def test_the_list_shows_who_created_each_key_and_developers_only_their_own(team, user, developer, admin):
    owners, _ = api_key_for(user, workspace=team, name="owner's")
    developers, _ = api_key_for(developer, workspace=team, name="developer's")
    admins, _ = api_key_for(admin, workspace=team, name="admin's")
    api_key_for(developer, name="in their personal workspace")

    everything = _client(admin, team).get("/api/keys").json()
    assert [(k["id"], k["created_by"]) for k in everything] == [
        (admins.pk, admin.email),
        (developers.pk, developer.email),
        (owners.pk, user.email),
    ]
    own = _client(developer, team).get("/api/keys").json()
    assert [(k["id"], k["created_by"]) for k in own] == [(developers.pk, developer.email)]


def test_a_key_whose_creator_is_gone_lists_without_a_creator(team, developer, admin):
    api_key, _ = api_key_for(developer, workspace=team)
    ApiKey.objects.filter(pk=api_key.pk).update(created_by=None)
    [row] = _client(admin, team).get("/api/keys").json()
    assert (row["id"], row["created_by"]) == (api_key.pk, None)


def test_a_key_created_in_the_team_acts_on_the_team(team, developer):
    response = _client(developer, team).post("/api/keys", {"name": "ci"}, format="json")
    assert response.status_code == 201
    identity = api_key_identity_get(raw_key=response.json()["key"])
    assert (identity.workspace_id, identity.user_id) == (team.pk, developer.pk)
    event = AuditEvent.objects.get(action="api_key.created")
    assert (event.actor, event.workspace) == (developer, team)

    bearer = APIClient()  # the key itself lists the team's keys it may see: its creator's
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['key']}")
    assert [k["name"] for k in bearer.get("/api/keys").json()] == ["ci"]


def test_a_workspace_the_caller_does_not_belong_to_is_404(team, user, other_user):
    api_key, _ = api_key_for(user, workspace=team)
    client = _client(other_user, team)
    assert client.get("/api/keys").status_code == 404
    assert client.delete(f"/api/keys/{api_key.pk}").status_code == 404
    assert client.get("/api/provider-keys").status_code == 404


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.BILLING])
def test_provider_keys_are_for_owners_and_admins(team, role):
    member = member_add(team, role=role)
    workspace_key_for(team, secret=SECRET)
    client = _client(member, team)

    _assert_forbidden(client.get("/api/provider-keys"), ["owner", "admin"])
    _assert_forbidden(
        client.put("/api/provider-keys/openai", {"key": SECRET}, format="json"), ["owner", "admin"]
    )
    _assert_forbidden(client.delete("/api/provider-keys/deepseek"), ["owner", "admin"])
    assert ProviderCredential.objects.filter(workspace=team).count() == 1


def test_an_admin_sets_the_teams_provider_key_for_everyone(team, admin, monkeypatch):
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    client = _client(admin, team)

    response = client.put("/api/provider-keys/deepseek", {"key": SECRET}, format="json")

    assert response.status_code == 200 and response.json()["scope"] == "workspace"
    credential = ProviderCredential.objects.get()
    assert credential.workspace == team
    rows = {row["provider"]: row for row in client.get("/api/provider-keys").json()}
    assert rows["deepseek"]["workspace"] == {"configured": True, "masked": "sk-te…89"}
    assert rows["deepseek"]["source"] == "workspace"
    event = AuditEvent.objects.get(action="provider_key.set")
    assert (event.actor, event.workspace, event.details["masked"]) == (admin, team, "sk-te…89")
    assert client.delete("/api/provider-keys/deepseek").status_code == 204
    assert not ProviderCredential.objects.exists()
