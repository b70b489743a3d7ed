"""/api/workspaces/{id}/members: list, change roles, remove, leave; the owner rules."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from accounts.models import ApiKey, AuditEvent, Membership, Role
from accounts.tests.factories import UserFactory, api_key_for, member_add, team_workspace

from .conftest import client_for

pytestmark = pytest.mark.django_db


def _url(team, user=None) -> str:
    base = f"/api/workspaces/{team.workspace.pk}/members"
    return base if user is None else f"{base}/{user.pk}"


def _role(team, user) -> str | None:
    memberships = Membership.objects.filter(workspace=team.workspace, user=user)
    return memberships.values_list("role", flat=True).first()


def test_every_member_lists_the_members_owners_first(team, django_assert_max_num_queries):
    client = client_for(team.developer)
    with django_assert_max_num_queries(4):  # session-less: membership check + the list
        response = client.get(_url(team))

    assert response.status_code == 200
    body = response.json()
    assert [(m["email"], m["role"]) for m in body] == [
        ("owner@example.com", "owner"),
        ("admin@example.com", "admin"),
        ("billing@example.com", "billing"),
        ("dev@example.com", "developer"),
    ]
    assert set(body[0]) == {"user_id", "email", "role", "joined_at", "limits"}
    assert body[0]["user_id"] == team.owner.pk


def test_outsiders_get_404_on_every_member_route(team, outsider):
    client = client_for(outsider)
    assert client.get(_url(team)).status_code == 404
    assert client.patch(_url(team, team.developer), {"role": "admin"}, format="json").status_code == 404
    assert client.delete(_url(team, team.developer)).status_code == 404
    assert _role(team, team.developer) == "developer"


def test_admin_changes_a_developers_role_and_it_is_audited(team):
    response = client_for(team.admin).patch(_url(team, team.developer), {"role": "billing"}, format="json")

    assert response.status_code == 200
    assert response.json()["role"] == "billing" and response.json()["email"] == "dev@example.com"
    assert _role(team, team.developer) == "billing"
    event = AuditEvent.objects.get(action="member.role_changed")
    assert event.actor == team.admin and event.target == f"user:{team.developer.pk}"
    assert event.details == {"email": "dev@example.com", "from": "developer", "to": "billing"}


def test_setting_the_same_role_changes_and_records_nothing(team):
    response = client_for(team.owner).patch(_url(team, team.developer), {"role": "developer"}, format="json")

    assert response.status_code == 200
    assert not AuditEvent.objects.filter(action="member.role_changed").exists()


@pytest.mark.parametrize("role", ["billing", "developer"])
def test_billing_and_developers_cannot_change_roles(team, role):
    client = client_for(team.member(role))
    response = client.patch(_url(team, team.developer), {"role": "admin"}, format="json")

    assert response.status_code == 403
    assert response.json()["error"]["required_role"] == ["owner", "admin"]
    assert _role(team, team.developer) == "developer"


def test_nobody_promotes_themselves_without_members_manage(team):
    response = client_for(team.developer).patch(_url(team, team.developer), {"role": "owner"}, format="json")

    assert response.status_code == 403
    assert _role(team, team.developer) == "developer"


def test_admins_cannot_make_owners(team):
    response = client_for(team.admin).patch(_url(team, team.developer), {"role": "owner"}, format="json")

    assert response.status_code == 403
    assert response.json()["error"]["required_role"] == ["owner"]
    assert _role(team, team.developer) == "developer"


def test_admins_cannot_touch_owners(team):
    second_owner = member_add(team.workspace, role=Role.OWNER)
    client = client_for(team.admin)

    assert client.patch(_url(team, second_owner), {"role": "developer"}, format="json").status_code == 403
    assert client.delete(_url(team, second_owner)).status_code == 403
    assert _role(team, second_owner) == "owner"


def test_an_unknown_role_is_a_400(team):
    response = client_for(team.owner).patch(_url(team, team.developer), {"role": "emperor"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "role"


def test_a_user_who_is_not_a_member_is_404(team, outsider):
    response = client_for(team.owner).patch(_url(team, outsider), {"role": "admin"}, format="json")

    assert response.status_code == 404


def test_the_last_owner_cannot_be_demoted_but_can_hand_over(team):
    client = client_for(team.owner)

    refused = client.patch(_url(team, team.owner), {"role": "admin"}, format="json")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "last_owner"
    assert _role(team, team.owner) == "owner"

    assert client.patch(_url(team, team.admin), {"role": "owner"}, format="json").status_code == 200
    assert client.patch(_url(team, team.owner), {"role": "admin"}, format="json").status_code == 200
    assert _role(team, team.owner) == "admin" and _role(team, team.admin) == "owner"


def test_the_last_owner_cannot_leave(team):
    response = client_for(team.owner).delete(_url(team, team.owner))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "last_owner"
    assert _role(team, team.owner) == "owner"


def test_a_personal_workspace_never_gets_a_second_owner(outsider):
    personal = outsider.personal_workspace
    guest = member_add(personal, role=Role.ADMIN)

    response = client_for(outsider).patch(
        f"/api/workspaces/{personal.pk}/members/{guest.pk}", {"role": "owner"}, format="json"
    )

    assert response.status_code == 409
    assert Membership.objects.get(workspace=personal, user=guest).role == "admin"


def test_removing_a_member_revokes_the_keys_they_created_there(team):
    mine, _ = api_key_for(team.developer, workspace=team.workspace, name="ci")
    elsewhere, _ = api_key_for(team.developer, name="own")  # their personal workspace's
    colleague, _ = api_key_for(team.admin, workspace=team.workspace)

    response = client_for(team.admin).delete(_url(team, team.developer))

    assert response.status_code == 200
    assert response.json() == {"revoked_keys": [{"id": mine.pk, "name": "ci", "prefix": mine.prefix}]}
    assert _role(team, team.developer) is None
    assert ApiKey.objects.get(pk=mine.pk).revoked_at is not None
    assert ApiKey.objects.get(pk=elsewhere.pk).revoked_at is None
    assert ApiKey.objects.get(pk=colleague.pk).revoked_at is None
    event = AuditEvent.objects.get(action="member.removed")
    assert event.actor == team.admin and event.details["revoked_keys"] == [mine.pk]


def test_anyone_may_leave(team):
    response = client_for(team.developer).delete(_url(team, team.developer))

    assert response.status_code == 200
    assert response.json() == {"revoked_keys": []}
    assert _role(team, team.developer) is None
    event = AuditEvent.objects.get(action="member.left")
    assert event.actor == team.developer and event.target == f"user:{team.developer.pk}"


@pytest.mark.parametrize("role", ["billing", "developer"])
def test_billing_and_developers_cannot_remove_others(team, role):
    response = client_for(team.member(role)).delete(_url(team, team.admin))

    assert response.status_code == 403
    assert _role(team, team.admin) == "admin"


def test_an_owner_removes_another_owner(team):
    second_owner = member_add(team.workspace, role=Role.OWNER)

    response = client_for(team.owner).delete(_url(team, second_owner))

    assert response.status_code == 200
    assert _role(team, second_owner) is None


def test_after_leaving_the_session_falls_back_to_the_personal_workspace(team, client):
    client.force_login(team.developer)
    session = client.session
    session["workspace_id"] = team.workspace.pk
    session.save()
    client_for(team.developer).delete(_url(team, team.developer))

    response = client.get(f"/workspaces/{team.developer.personal_workspace.pk}/members/")

    assert response.status_code == 200
    assert client.get(f"/workspaces/{team.workspace.pk}/members/").status_code == 404


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner():
    first = UserFactory()
    workspace = team_workspace(owner=first)
    second = member_add(workspace, role=Role.OWNER)
    barrier = threading.Barrier(2)
    statuses = []

    def demote(actor, target):
        try:
            barrier.wait(timeout=10)
            response = client_for(actor).patch(
                f"/api/workspaces/{workspace.pk}/members/{target.pk}", {"role": "admin"}, format="json"
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=demote, args=(first, second)),
        threading.Thread(target=demote, args=(second, first)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert Membership.objects.filter(workspace=workspace, role=Role.OWNER).count() == 1
    assert sorted(statuses) in ([200, 403], [200, 409])  # the loser is no longer an owner, or the last one
