"""The workspace pages: members, invitations, the switcher, the new-workspace form and the
invitation's accept page. Post/Redirect/Get, CSRF, buttons by role."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from accounts.models import AuditEvent, Invitation, Membership, Role, Workspace
from accounts.services.workspaces import invitation_create
from accounts.tests.factories import UserFactory, member_add

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _members(team) -> str:
    return f"/workspaces/{team.workspace.pk}/members/"


def _messages(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_owner_sees_every_control(team):
    invitation_create(workspace=team.workspace, actor=team.owner, email="pending@example.com", role="admin")

    html = _client(team.owner).get(_members(team)).content.decode()

    for email in ("owner@example.com", "admin@example.com", "billing@example.com", "dev@example.com"):
        assert email in html
    assert f'action="/workspaces/{team.workspace.pk}/members/invite/"' in html
    assert f'action="/workspaces/{team.workspace.pk}/members/{team.developer.pk}/role/"' in html
    assert f'action="/workspaces/{team.workspace.pk}/members/{team.admin.pk}/remove/"' in html
    assert "pending@example.com" in html and "/revoke/" in html
    assert '<option value="owner"' in html  # an owner may make owners
    # The only owner: no control to demote or remove them, and no "Leave".
    assert f"/members/{team.owner.pk}/role/" not in html and f"/members/{team.owner.pk}/remove/" not in html
    assert 'for="invite-email"' in html and 'for="invite-role"' in html  # labelled fields


def test_a_developer_sees_the_list_and_can_only_leave(team):
    invitation_create(workspace=team.workspace, actor=team.owner, email="pending@example.com", role="admin")

    html = _client(team.developer).get(_members(team)).content.decode()

    assert "admin@example.com" in html
    assert "/members/invite/" not in html and "/role/" not in html and "/revoke/" not in html
    assert "pending@example.com" not in html
    assert re.findall(r'action="([^"]*/remove/)"', html) == [
        f"/workspaces/{team.workspace.pk}/members/{team.developer.pk}/remove/"
    ]
    assert "Leave the workspace" in html


def test_an_admin_is_not_offered_owner_controls(team):
    html = _client(team.admin).get(_members(team)).content.decode()

    assert '<option value="owner"' not in html
    assert f"/members/{team.owner.pk}/role/" not in html and f"/members/{team.owner.pk}/remove/" not in html
    assert f"/members/{team.developer.pk}/role/" in html


def test_outsiders_get_404_on_the_pages(team, outsider):
    client = _client(outsider)
    assert client.get(_members(team)).status_code == 404
    response = client.post(f"{_members(team)}invite/", {"email": "x@example.com", "role": "owner"})
    assert response.status_code == 404
    assert not Invitation.objects.exists()


def test_pages_need_a_login(team, client):
    response = client.get(_members(team))

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_invite_redirects_back_with_a_message(team, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = _client(team.admin).post(
            f"{_members(team)}invite/", {"email": "New@Example.com", "role": "billing"}
        )

    assert response.status_code == 302 and response["Location"] == _members(team)
    assert Invitation.objects.get().email == "new@example.com"
    assert any("Invitation sent to new@example.com" in m for m in _messages(response))


def test_a_refused_invite_is_a_message_not_an_error_page(team):
    response = _client(team.admin).post(
        f"{_members(team)}invite/", {"email": "dev@example.com", "role": "billing"}
    )

    assert response.status_code == 302
    assert any("already a member" in m for m in _messages(response))


def test_a_developer_posting_anyway_is_refused(team):
    client = _client(team.developer)
    assert (
        client.post(f"{_members(team)}invite/", {"email": "x@example.com", "role": "admin"}).status_code
        == 403
    )
    assert client.post(f"{_members(team)}{team.admin.pk}/role/", {"role": "developer"}).status_code == 403
    assert client.post(f"{_members(team)}{team.admin.pk}/remove/").status_code == 403
    assert Membership.objects.get(workspace=team.workspace, user=team.admin).role == "admin"


def test_change_role_and_remove_from_the_page(team):
    client = _client(team.owner)

    changed = client.post(f"{_members(team)}{team.developer.pk}/role/", {"role": "admin"})
    assert changed.status_code == 302
    assert Membership.objects.get(workspace=team.workspace, user=team.developer).role == "admin"

    removed = client.post(f"{_members(team)}{team.billing.pk}/remove/")
    assert removed.status_code == 302 and removed["Location"] == _members(team)
    assert not Membership.objects.filter(workspace=team.workspace, user=team.billing).exists()


def test_leaving_from_the_page_goes_to_the_dashboard_and_forgets_the_choice(team):
    client = _client(team.developer)
    client.post("/workspaces/switch/", {"workspace": team.workspace.pk})

    response = client.post(f"{_members(team)}{team.developer.pk}/remove/")

    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    assert "workspace_id" not in client.session
    assert AuditEvent.objects.filter(action="member.left").exists()


def test_the_last_owner_cannot_leave_from_the_page(team):
    response = _client(team.owner).post(f"{_members(team)}{team.owner.pk}/remove/")

    assert response.status_code == 302
    assert any("last owner" in m for m in _messages(response))
    assert Membership.objects.filter(workspace=team.workspace, user=team.owner).exists()


def test_revoke_from_the_page(team):
    invitation, _ = invitation_create(
        workspace=team.workspace, actor=team.owner, email="p@example.com", role="developer"
    )

    response = _client(team.admin).post(
        f"/workspaces/{team.workspace.pk}/invitations/{invitation.pk}/revoke/"
    )

    assert response.status_code == 302
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None


def test_forms_need_the_csrf_token(team):
    client = Client(enforce_csrf_checks=True)
    client.force_login(team.owner)

    assert (
        client.post(f"{_members(team)}invite/", {"email": "x@example.com", "role": "admin"}).status_code
        == 403
    )
    assert client.post("/workspaces/switch/", {"workspace": team.workspace.pk}).status_code == 403
    assert client.post("/workspaces/new/", {"name": "Sneaky"}).status_code == 403
    assert not Invitation.objects.exists()


def test_the_switcher_is_in_the_navigation_when_signed_in_only(team, client):
    html = _client(team.developer).get("/accounts/profile/").content.decode()

    switcher = re.search(r'<form method="post" action="/workspaces/switch/".*?</form>', html, re.S).group(0)
    assert 'name="csrfmiddlewaretoken"' in switcher
    assert '<label class="visually-hidden" for="workspace-switcher">Workspace</label>' in switcher
    assert f'<option value="{team.workspace.pk}">Acme</option>' in switcher
    assert f'<option value="{team.developer.personal_workspace.pk}" selected>' in switcher
    assert 'value="new"' in switcher
    assert "/workspaces/switch/" not in client.get("/pricing/").content.decode()


def test_switching_selects_the_workspace_and_goes_back(team):
    client = _client(team.developer)

    response = client.post("/workspaces/switch/", {"workspace": team.workspace.pk, "next": "/credits/"})

    assert response.status_code == 302 and response["Location"] == "/credits/"
    assert client.session["workspace_id"] == team.workspace.pk
    html = client.get("/accounts/profile/").content.decode()
    assert f'<option value="{team.workspace.pk}" selected>' in html


def test_switching_never_redirects_off_site_and_moves_workspace_pages_along(team):
    client = _client(team.developer)
    personal = team.developer.personal_workspace.pk

    off_site = client.post(
        "/workspaces/switch/", {"workspace": team.workspace.pk, "next": "https://evil.example/"}
    )
    assert off_site["Location"] == "/dashboard/"
    moved = client.post("/workspaces/switch/", {"workspace": personal, "next": _members(team)})
    assert moved["Location"] == f"/workspaces/{personal}/members/"


def test_switching_to_a_foreign_workspace_is_404(team, outsider):
    client = _client(outsider)

    assert client.post("/workspaces/switch/", {"workspace": team.workspace.pk}).status_code == 404
    assert client.post("/workspaces/switch/", {"workspace": "abc"}).status_code == 404
    assert "workspace_id" not in client.session


def test_new_workspace_form(outsider):
    client = _client(outsider)
    assert 'for="id_name"' in client.get("/workspaces/new/").content.decode()
    assert client.post("/workspaces/switch/", {"workspace": "new"})["Location"] == "/workspaces/new/"

    response = client.post("/workspaces/new/", {"name": "Moonshot"})

    workspace = Workspace.objects.get(name="Moonshot")
    assert response.status_code == 302 and response["Location"] == f"/workspaces/{workspace.pk}/members/"
    assert client.session["workspace_id"] == workspace.pk
    assert Membership.objects.get(workspace=workspace).role == "owner"
    assert (
        client.post("/workspaces/new/", {"name": "  "}).status_code == 200
    )  # the form again, with its error


def _pending(team, email="new@example.com", role="billing") -> str:
    _, url = invitation_create(workspace=team.workspace, actor=team.owner, email=email, role=role)
    return url.split("://", 1)[1].split("/", 1)[1].join(["/", ""])


def test_accept_page_signed_out_offers_login_and_signup_back_here(team, client):
    path = _pending(team)

    html = client.get(path).content.decode()

    assert "Acme" in html and "Billing" in html
    assert f'href="/accounts/login/?next={path}"' in html
    assert f'href="/accounts/signup/?next={path}"' in html
    assert '<form method="post">' not in html


def test_accept_page_signed_in_accepts_and_selects_the_workspace(team):
    path = _pending(team)
    newcomer = UserFactory(email="NEW@example.com")
    client = _client(newcomer)

    page = client.get(path)
    assert page.status_code == 200 and "Accept the invitation" in page.content.decode()
    response = client.post(path)

    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    assert client.session["workspace_id"] == team.workspace.pk
    assert Membership.objects.get(workspace=team.workspace, user=newcomer).role == Role.BILLING
    gone = client.get(path)
    assert gone.status_code == 410 and "already been used" in gone.content.decode()


def test_accept_page_for_another_account_accepts_nothing_and_hides_the_address(team):
    path = _pending(team, email="invited@example.com")
    other = UserFactory(email="other@example.com")
    client = _client(other)

    html = client.get(path).content.decode()
    assert "another email address" in html and "invited@example.com" not in html
    assert "Accept the invitation" not in html
    response = client.post(path)
    assert response.status_code == 302 and response["Location"] == path
    assert not Membership.objects.filter(user=other, workspace=team.workspace).exists()


def test_accept_page_unknown_token_is_404(client):
    assert client.get("/invitations/accept/" + "z" * 43 + "/").status_code == 404


def test_accept_post_signed_out_goes_to_login(team, client):
    path = _pending(team)

    response = client.post(path)

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")
    assert Invitation.objects.get().accepted_at is None


def test_a_member_invited_again_is_told_so(team):
    path = _pending(team, email="late@example.com")
    late = member_add(team.workspace, role=Role.DEVELOPER, user=UserFactory(email="late@example.com"))

    assert "already a member" in _client(late).get(path).content.decode()
