"""The audit log page: owners and admins read it, newest first and paged; others get 403."""

import pytest

from accounts.models import AuditEvent, Role
from accounts.services import audit_record, membership_create, workspace_create
from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    owner = UserFactory(email="owner@example.com")
    workspace = workspace_create(user=owner, name="Acme")
    return workspace, owner


def _member(workspace, owner, role):
    user = UserFactory()
    membership_create(workspace=workspace, user=user, role=role, actor=owner, as_operator=False)
    return user


def test_an_admin_reads_the_log_newest_first(client, team):
    workspace, owner = team
    admin = _member(workspace, owner, Role.ADMIN)
    audit_record(action="api_key.revoked", actor=owner, workspace=workspace, target="api_key:7")
    client.force_login(admin)

    page = client.get(f"/workspaces/{workspace.pk}/audit/")

    assert page.status_code == 200
    body = page.content.decode()
    assert body.index("api_key.revoked") < body.index("member.added")  # newest first
    assert "owner@example.com" in body


@pytest.mark.parametrize("role", [Role.BILLING, Role.DEVELOPER])
def test_other_roles_may_not(client, team, role):
    workspace, owner = team
    client.force_login(_member(workspace, owner, role))
    assert client.get(f"/workspaces/{workspace.pk}/audit/").status_code == 403


def test_a_non_member_gets_404(client, team):
    workspace, _owner = team
    client.force_login(UserFactory())
    assert client.get(f"/workspaces/{workspace.pk}/audit/").status_code == 404


def test_older_events_continue_where_the_page_stopped(client, team):
    workspace, owner = team
    AuditEvent.objects.filter(workspace=workspace).delete()  # only the rows below
    for index in range(60):
        audit_record(action="test.event", actor=owner, workspace=workspace, target=f"n:{index}")
    client.force_login(owner)

    first = client.get(f"/workspaces/{workspace.pk}/audit/").content.decode()
    older = first.split('href="?before=')[1].split('"')[0]
    second = client.get(f"/workspaces/{workspace.pk}/audit/?before={older}").content.decode()

    assert "n:59<" in first and "n:10<" in first and "n:9<" not in first
    assert "n:9<" in second and "n:0<" in second and "n:10<" not in second
    assert 'href="?before=' not in second
