"""Keys belong to a workspace and are made by a member: the limit per member, rotation keeping
the creator, revoking what a member made (they left), and the audit trail of every change."""

import json

import pytest
from django.core.cache import cache

from accounts.models import ApiKey, AuditEvent, Role
from accounts.selectors import API_KEY_REVOKED_MARKER, api_key_cache_key, api_key_identity_get
from accounts.services import (
    api_key_create,
    api_key_revoke,
    api_key_rotate,
    api_keys_revoke_created_by,
    provider_credential_delete,
)
from accounts.tests.factories import api_key_for, member_add, team_workspace, workspace_key_for
from core.exceptions import ApiError

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(user):
    return team_workspace(owner=user)


@pytest.fixture
def developer(team):
    return member_add(team, role=Role.DEVELOPER)


def test_the_active_key_limit_counts_each_members_keys_in_the_workspace(team, user, developer, settings):
    settings.API_KEYS_PER_USER_LIMIT = 1
    api_key_create(workspace=team, created_by=user, name="owner's")
    api_key_create(workspace=team, created_by=developer, name="developer's")  # a slot of their own
    api_key_create(workspace=user.personal_workspace, created_by=user, name="elsewhere")

    with pytest.raises(ApiError) as exc:
        api_key_create(workspace=team, created_by=developer, name="one too many")
    assert exc.value.extra["limit"] == 1
    assert ApiKey.objects.filter(workspace=team).count() == 2


def test_a_rotation_by_an_admin_keeps_the_creator_and_records_the_admin(team, developer):
    admin = member_add(team, role=Role.ADMIN)
    old, _ = api_key_for(developer, workspace=team, name="ci")

    rotation = api_key_rotate(workspace=team, key_id=old.pk, actor=admin, grace_seconds=60)

    assert rotation.new_key.created_by == developer and rotation.new_key.workspace == team
    event = AuditEvent.objects.get(action="api_key.rotated")
    assert (event.actor, event.workspace, event.target) == (admin, team, f"api_key:{old.pk}")
    assert event.details["new_key_id"] == rotation.new_key.pk
    assert rotation.plaintext not in json.dumps(event.details)


def test_a_key_whose_creator_is_gone_is_not_rotated(team, developer):
    old, _ = api_key_for(developer, workspace=team)
    ApiKey.objects.filter(pk=old.pk).update(created_by=None)
    with pytest.raises(ApiError) as exc:
        api_key_rotate(workspace=team, key_id=old.pk)
    assert exc.value.status_code == 409


def test_create_and_revoke_are_audited_without_the_secret(team, developer):
    api_key, plaintext = api_key_for(developer, workspace=team, name="laptop")
    api_key_revoke(workspace=team, key_id=api_key.pk, actor=developer)
    api_key_revoke(workspace=team, key_id=api_key.pk, actor=developer)  # idempotent: not audited twice

    events = list(AuditEvent.objects.filter(workspace=team).order_by("id"))
    assert [(e.action, e.actor, e.target) for e in events] == [
        ("api_key.created", developer, f"api_key:{api_key.pk}"),
        ("api_key.revoked", developer, f"api_key:{api_key.pk}"),
    ]
    assert events[0].details == {"name": "laptop", "prefix": api_key.prefix}
    assert all(plaintext not in json.dumps(e.details) for e in events)


def test_revoking_what_a_member_created_stops_their_keys_at_once(
    team, user, developer, django_capture_on_commit_callbacks
):
    theirs = [api_key_for(developer, workspace=team, name=f"k{i}") for i in range(2)]
    already_revoked, _ = api_key_for(developer, workspace=team, name="old")
    api_key_revoke(workspace=team, key_id=already_revoked.pk)
    owners, owners_plaintext = api_key_for(user, workspace=team)
    elsewhere, elsewhere_plaintext = api_key_for(developer)  # their personal workspace
    for _, plaintext in theirs:
        assert api_key_identity_get(raw_key=plaintext) is not None  # cached by a worker

    with django_capture_on_commit_callbacks(execute=True):
        revoked = api_keys_revoke_created_by(workspace=team, user=developer, actor=user)

    assert sorted(key.pk for key in revoked) == sorted(key.pk for key, _ in theirs)
    for api_key, plaintext in theirs:
        assert cache.get(api_key_cache_key(api_key.key_hash)) == API_KEY_REVOKED_MARKER
        assert api_key_identity_get(raw_key=plaintext) is None
        api_key.refresh_from_db()
        assert api_key.revoked_at is not None
    assert api_key_identity_get(raw_key=owners_plaintext).key_id == owners.pk
    assert api_key_identity_get(raw_key=elsewhere_plaintext).key_id == elsewhere.pk
    events = AuditEvent.objects.filter(action="api_key.revoked", actor=user)
    assert events.count() == 2
    assert {e.details["created_by"] for e in events} == {developer.email}


def test_revoking_what_a_member_created_twice_revokes_nothing_more(team, developer):
    api_key_for(developer, workspace=team)
    assert len(api_keys_revoke_created_by(workspace=team, user=developer)) == 1
    assert api_keys_revoke_created_by(workspace=team, user=developer) == []


def test_provider_key_changes_are_audited_with_the_masked_value_only(team, user):
    secret = "sk-team-provider-key-0123456789"
    workspace_key_for(team, secret=secret, actor=user)
    workspace_key_for(team, secret=secret + "X", actor=user)
    provider_credential_delete(scope="workspace", provider="deepseek", workspace=team, actor=user)

    events = list(AuditEvent.objects.filter(workspace=team).order_by("id"))
    assert [(e.action, e.actor, e.target) for e in events] == [
        ("provider_key.set", user, "provider_key:deepseek"),
        ("provider_key.set", user, "provider_key:deepseek"),
        ("provider_key.deleted", user, "provider_key:deepseek"),
    ]
    assert events[0].details == {
        "provider": "deepseek",
        "scope": "workspace",
        "masked": "sk-te…89",
        "replaced": False,
    }
    assert events[1].details["replaced"] is True
    assert all(secret[5:-2] not in json.dumps(e.details) for e in events)
