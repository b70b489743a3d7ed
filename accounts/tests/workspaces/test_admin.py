"""The workspace admin: counts, memberships edited through the services (and audited), the
owner rules kept, deletion guarded; invitations and the audit log read-only."""

from __future__ import annotations

import pytest

from accounts.models import AuditEvent, Membership, Role, Workspace
from accounts.services.workspaces import audit_record, invitation_create
from accounts.tests.factories import SuperuserFactory, UserFactory, api_key_for
from billing.services import plan_catalog_seed
from credits.services import credit_grant

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    staff = SuperuserFactory(email="root@example.com")
    client.force_login(staff)
    client.staff = staff
    return client


def _change_url(workspace) -> str:
    return f"/admin/accounts/workspace/{workspace.pk}/change/"


def _form(workspace, *, roles: dict | None = None, delete=(), add=(), name=None) -> dict:
    """The change form's POST: the name and the membership inline (``roles``: user → new role)."""
    roles = roles or {}
    memberships = list(Membership.objects.filter(workspace=workspace).order_by("pk"))
    data = {
        "name": name or workspace.name,
        "memberships-TOTAL_FORMS": str(len(memberships) + len(add)),
        "memberships-INITIAL_FORMS": str(len(memberships)),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for i, membership in enumerate(memberships):
        data[f"memberships-{i}-id"] = str(membership.pk)
        data[f"memberships-{i}-workspace"] = str(workspace.pk)
        data[f"memberships-{i}-user"] = str(membership.user_id)
        data[f"memberships-{i}-role"] = roles.get(membership.user, membership.role)
        if membership.user in delete:
            data[f"memberships-{i}-DELETE"] = "on"
    for j, (user, role) in enumerate(add, start=len(memberships)):
        data[f"memberships-{j}-workspace"] = str(workspace.pk)
        data[f"memberships-{j}-user"] = str(user.pk)
        data[f"memberships-{j}-role"] = role
    return data


def test_the_list_shows_member_and_pending_invitation_counts(operator, team):
    invitation_create(workspace=team.workspace, actor=team.owner, email="p@example.com", role="admin")

    html = operator.get("/admin/accounts/workspace/?q=Acme").content.decode()

    assert "Acme" in html
    assert '<td class="field-member_count">4</td>' in html
    assert '<td class="field-pending_invitation_count">1</td>' in html


def test_renaming_and_editing_members_go_through_the_services_and_are_audited(operator, team):
    newcomer = UserFactory(email="newcomer@example.com")
    data = _form(
        team.workspace,
        name="Acme Renamed",
        roles={team.developer: Role.ADMIN},
        delete=[team.billing],
        add=[(newcomer, Role.DEVELOPER)],
    )

    response = operator.post(_change_url(team.workspace), data)

    assert response.status_code == 302, response.content.decode()[:3000]
    roles = dict(Membership.objects.filter(workspace=team.workspace).values_list("user__email", "role"))
    assert roles == {
        "owner@example.com": "owner",
        "admin@example.com": "admin",
        "dev@example.com": "admin",
        "newcomer@example.com": "developer",
    }
    events = AuditEvent.objects.filter(workspace=team.workspace, details__via="admin")
    assert sorted(events.values_list("action", flat=True)) == [
        "member.added",
        "member.removed",
        "member.role_changed",
        "workspace.updated",
    ]
    assert {event.actor for event in events} == {operator.staff}


def test_ownership_can_be_handed_over_in_one_save(operator, team):
    data = _form(team.workspace, roles={team.owner: Role.ADMIN, team.admin: Role.OWNER})

    assert operator.post(_change_url(team.workspace), data).status_code == 302
    assert Membership.objects.get(workspace=team.workspace, role=Role.OWNER).user == team.admin


def test_the_admin_keeps_an_owner(operator, team):
    response = operator.post(
        _change_url(team.workspace), _form(team.workspace, roles={team.owner: Role.ADMIN})
    )

    assert response.status_code == 200
    assert "keeps at least one owner" in response.content.decode()
    assert Membership.objects.get(workspace=team.workspace, user=team.owner).role == "owner"
    assert not AuditEvent.objects.filter(details__via="admin").exists()


def test_a_personal_workspace_gets_no_second_owner_in_the_admin(operator):
    user = UserFactory()
    data = _form(user.personal_workspace, add=[(UserFactory(), Role.OWNER)])

    response = operator.post(_change_url(user.personal_workspace), data)

    assert response.status_code == 200
    assert Membership.objects.filter(workspace=user.personal_workspace).count() == 1


def test_deletion_is_guarded_and_audited(operator, team):
    personal = team.owner.personal_workspace
    refused = operator.post(f"/admin/accounts/workspace/{personal.pk}/delete/", {"post": "yes"})
    assert refused.status_code == 302 and refused["Location"] == _change_url(personal)
    assert Workspace.objects.filter(pk=personal.pk).exists()

    key, _ = api_key_for(team.developer, workspace=team.workspace)
    blocked = operator.post(f"/admin/accounts/workspace/{team.workspace.pk}/delete/", {"post": "yes"})
    assert blocked.status_code == 302 and Workspace.objects.filter(pk=team.workspace.pk).exists()

    key.revoked_at = key.created_at
    key.save()
    deleted = operator.post(f"/admin/accounts/workspace/{team.workspace.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert not Workspace.objects.filter(pk=team.workspace.pk).exists()
    event = AuditEvent.objects.get(action="workspace.deleted")
    assert event.actor == operator.staff and event.details["via"] == "admin"


def test_no_workspace_is_added_or_bulk_deleted_in_the_admin(operator):
    assert operator.get("/admin/accounts/workspace/add/").status_code == 403
    assert "delete_selected" not in operator.get("/admin/accounts/workspace/").content.decode()


def test_the_audit_log_is_read_only_filterable_and_searchable(operator, team):
    audit_record(action="member.removed", actor=team.admin, workspace=team.workspace, target="user:42")
    event = AuditEvent.objects.get(action="member.removed")

    assert operator.get("/admin/accounts/auditevent/add/").status_code == 403
    assert operator.post(f"/admin/accounts/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    change = operator.get(f"/admin/accounts/auditevent/{event.pk}/change/").content.decode()
    assert 'name="_save"' not in change
    operator.post(f"/admin/accounts/auditevent/{event.pk}/change/", {"action": "forged"})
    event.refresh_from_db()
    assert event.action == "member.removed"

    filtered = operator.get("/admin/accounts/auditevent/", {"action": "member.removed"}).content.decode()
    assert "user:42" in filtered and '<td class="field-action">workspace.created' not in filtered
    by_workspace = operator.get("/admin/accounts/auditevent/", {"workspace__id__exact": team.workspace.pk})
    assert by_workspace.status_code == 200 and "user:42" in by_workspace.content.decode()
    assert (
        "user:42" in operator.get("/admin/accounts/auditevent/", {"q": "admin@example.com"}).content.decode()
    )
    assert "user:42" not in operator.get("/admin/accounts/auditevent/", {"q": "nobody@"}).content.decode()


def test_invitations_are_read_only(operator, team):
    invitation, _ = invitation_create(
        workspace=team.workspace, actor=team.owner, email="p@example.com", role="admin"
    )

    listing = operator.get("/admin/accounts/invitation/").content.decode()
    assert "p@example.com" in listing and "pending" in listing
    assert (
        invitation.token_hash
        not in operator.get(f"/admin/accounts/invitation/{invitation.pk}/change/").content.decode()
    )
    assert operator.get("/admin/accounts/invitation/add/").status_code == 403
    assert (
        operator.post(f"/admin/accounts/invitation/{invitation.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )


def test_the_change_page_shows_the_plan_the_credits_and_the_live_keys(operator, team):
    plan_catalog_seed()
    workspace = team.workspace
    credit_grant(workspace=workspace, amount=120, reason="test", admin_user=operator.staff)
    api_key_for(team.owner, workspace=workspace)

    html = operator.get(_change_url(workspace)).content.decode()

    assert "Plan: Free (no paid subscription)" in html
    assert "Credits: 120 (120 available)" in html
    assert "Live API keys: 1" in html
