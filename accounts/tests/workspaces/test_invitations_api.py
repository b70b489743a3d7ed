"""Invitations: create (and the email), list, revoke, accept; single use under concurrency."""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.utils import timezone

from accounts.models import AuditEvent, Invitation, Membership, Role
from accounts.services.workspaces import invitation_create
from accounts.tests.factories import UserFactory, member_add, team_workspace

from .conftest import client_for

pytestmark = pytest.mark.django_db


def _invite(team, email="new@example.com", role="developer", *, by=None):
    client = client_for(by or team.owner)
    return client.post(
        f"/api/workspaces/{team.workspace.pk}/invitations", {"email": email, "role": role}, format="json"
    )


def _token(accept_url: str) -> str:
    return accept_url.rstrip("/").rsplit("/", 1)[-1]


def _accept(user, token):
    return client_for(user).post("/api/invitations/accept", {"token": token}, format="json")


def test_invite_answers_the_link_once_stores_only_its_hash_and_mails_it(
    team, settings, django_capture_on_commit_callbacks
):
    settings.SITE_URL = "https://tollgate.example"
    with django_capture_on_commit_callbacks(execute=True):
        response = _invite(team, email="New.Person@Example.com", role="billing")

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "email", "role", "expires_at", "accept_url"}
    assert body["email"] == "new.person@example.com" and body["role"] == "billing"
    assert body["accept_url"].startswith("https://tollgate.example/invitations/accept/")
    token = _token(body["accept_url"])
    assert len(token) >= 43  # token_urlsafe(32)
    invitation = Invitation.objects.get(pk=body["id"])
    assert invitation.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(Invitation.objects.filter(pk=invitation.pk).values().get())
    assert timedelta(days=6, hours=23) < invitation.expires_at - timezone.now() <= timedelta(days=7)
    assert invitation.invited_by == team.owner

    (message,) = mail.outbox
    assert message.to == ["new.person@example.com"]
    assert "Acme" in message.subject
    assert body["accept_url"] in message.body and "Billing" in message.body

    event = AuditEvent.objects.get(action="invitation.created")
    assert event.details == {"email": "new.person@example.com", "role": "billing"}
    assert token not in str(event.details)


def test_the_email_names_the_workspace_as_typed(team, django_capture_on_commit_callbacks):
    team.workspace.name = "R&D <lab>"
    team.workspace.save()
    with django_capture_on_commit_callbacks(execute=True):
        _invite(team)

    assert 'join the workspace "R&D <lab>"' in mail.outbox[0].body


def test_list_shows_pending_invitations_only(team):
    pending = _invite(team, email="a@example.com").json()
    revoked = _invite(team, email="b@example.com").json()
    client_for(team.owner).delete(f"/api/workspaces/{team.workspace.pk}/invitations/{revoked['id']}")
    expired = _invite(team, email="c@example.com").json()
    Invitation.objects.filter(pk=expired["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = client_for(team.admin).get(f"/api/workspaces/{team.workspace.pk}/invitations")

    assert response.status_code == 200
    (row,) = response.json()
    assert row["id"] == pending["id"] and row["email"] == "a@example.com"
    assert row["invited_by"] == "owner@example.com"
    assert "accept_url" not in row and "token" not in str(row)


@pytest.mark.parametrize("role", ["billing", "developer"])
def test_billing_and_developers_cannot_invite_or_list(team, role):
    user = team.member(role)
    assert _invite(team, by=user).status_code == 403
    assert client_for(user).get(f"/api/workspaces/{team.workspace.pk}/invitations").status_code == 403
    assert not Invitation.objects.exists()


def test_admins_cannot_invite_owners_but_owners_can(team):
    refused = _invite(team, role="owner", by=team.admin)
    assert refused.status_code == 403
    assert refused.json()["error"]["required_role"] == ["owner"]

    assert _invite(team, role="owner", by=team.owner).status_code == 201


def test_nobody_is_invited_as_a_second_owner_of_a_personal_workspace(outsider):
    response = client_for(outsider).post(
        f"/api/workspaces/{outsider.personal_workspace.pk}/invitations",
        {"email": "friend@example.com", "role": "owner"},
        format="json",
    )
    assert response.status_code == 409


def test_members_and_pending_addresses_answer_409(team):
    assert _invite(team, email="DEV@example.com").status_code == 409  # a member, any case
    assert _invite(team, email="x@example.com").status_code == 201
    duplicate = _invite(team, email="X@example.com")
    assert duplicate.status_code == 409 and duplicate.json()["error"]["param"] == "email"


@pytest.mark.parametrize(
    "body", [{"email": "not-an-email", "role": "developer"}, {"email": "a@b.co", "role": "x"}]
)
def test_bad_input_is_a_400(team, body):
    response = client_for(team.owner).post(
        f"/api/workspaces/{team.workspace.pk}/invitations", body, format="json"
    )

    assert response.status_code == 400
    assert not Invitation.objects.exists()


def test_accept_joins_with_the_role_and_is_audited(team):
    token = _token(_invite(team, email="new@example.com", role="billing").json()["accept_url"])
    newcomer = UserFactory(email="NEW@example.com")

    response = _accept(newcomer, token)

    assert response.status_code == 200
    assert response.json() == {
        "workspace": {
            "id": team.workspace.pk,
            "name": "Acme",
            "slug": team.workspace.slug,
            "role": "billing",
            "personal": False,
        },
        "role": "billing",
    }
    assert Membership.objects.get(workspace=team.workspace, user=newcomer).role == "billing"
    invitation = Invitation.objects.get()
    assert invitation.accepted_by == newcomer and invitation.accepted_at is not None
    event = AuditEvent.objects.get(action="invitation.accepted")
    assert event.actor == newcomer and event.workspace == team.workspace


def test_accept_by_another_address_is_forbidden(team):
    token = _token(_invite(team, email="new@example.com").json()["accept_url"])
    intruder = UserFactory(email="intruder@example.com")

    response = _accept(intruder, token)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert "new@example.com" not in response.content.decode()
    assert not Membership.objects.filter(user=intruder, workspace=team.workspace).exists()
    assert Invitation.objects.get().accepted_at is None


def test_an_unknown_token_is_404(outsider):
    response = _accept(outsider, "nope-" + "x" * 40)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_used_token_is_gone(team):
    token = _token(_invite(team, email="new@example.com").json()["accept_url"])
    newcomer = UserFactory(email="new@example.com")
    assert _accept(newcomer, token).status_code == 200

    again = _accept(newcomer, token)

    assert again.status_code == 410
    assert again.json()["error"]["code"] == "invitation_gone"


def test_a_revoked_invitation_is_gone_and_revoking_is_audited(team):
    body = _invite(team, email="new@example.com").json()
    revoke = client_for(team.admin).delete(f"/api/workspaces/{team.workspace.pk}/invitations/{body['id']}")
    assert revoke.status_code == 204
    assert AuditEvent.objects.get(action="invitation.revoked").actor == team.admin

    response = _accept(UserFactory(email="new@example.com"), _token(body["accept_url"]))

    assert response.status_code == 410


def test_an_expired_invitation_is_gone(team):
    token = _token(_invite(team, email="new@example.com").json()["accept_url"])
    newcomer = UserFactory(email="new@example.com")

    with time_machine.travel(timezone.now() + timedelta(days=7, seconds=1)):
        response = _accept(newcomer, token)

    assert response.status_code == 410
    assert not Membership.objects.filter(user=newcomer, workspace=team.workspace).exists()


def test_an_existing_member_cannot_accept_twice(team):
    _, url = invitation_create(
        workspace=team.workspace, actor=team.owner, email="late@example.com", role="admin"
    )
    late = member_add(team.workspace, role=Role.DEVELOPER, user=UserFactory(email="late@example.com"))

    response = _accept(late, _token(url))

    assert response.status_code == 409
    assert Membership.objects.get(workspace=team.workspace, user=late).role == "developer"


def test_revoke_rules(team, outsider):
    owner_invite = _invite(team, email="boss@example.com", role="owner").json()
    url = f"/api/workspaces/{team.workspace.pk}/invitations/{owner_invite['id']}"
    assert client_for(team.admin).delete(url).status_code == 403  # an owner's invitation
    assert client_for(team.developer).delete(url).status_code == 403
    assert client_for(outsider).delete(url).status_code == 404
    other = team_workspace(owner=outsider)
    assert (
        client_for(outsider)
        .delete(f"/api/workspaces/{other.pk}/invitations/{owner_invite['id']}")
        .status_code
        == 404
    )
    assert client_for(team.owner).delete(url).status_code == 204
    assert client_for(team.owner).delete(url).status_code == 204  # already revoked: nothing more
    assert AuditEvent.objects.filter(action="invitation.revoked").count() == 1


def test_revoking_an_accepted_invitation_is_a_conflict(team):
    body = _invite(team, email="new@example.com").json()
    _accept(UserFactory(email="new@example.com"), _token(body["accept_url"]))

    response = client_for(team.owner).delete(f"/api/workspaces/{team.workspace.pk}/invitations/{body['id']}")

    assert response.status_code == 409


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_accepts_make_one_member():
    owner = UserFactory()
    workspace = team_workspace(owner=owner)
    _, url = invitation_create(workspace=workspace, actor=owner, email="race@example.com", role="developer")
    token = _token(url)
    newcomer = UserFactory(email="race@example.com")
    attempts = 6
    barrier = threading.Barrier(attempts)
    statuses = []

    def accept():
        try:
            barrier.wait(timeout=10)
            statuses.append(_accept(newcomer, token).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=accept) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(statuses) == [200] + [410] * (attempts - 1)
    assert Membership.objects.filter(workspace=workspace, user=newcomer).count() == 1
    assert AuditEvent.objects.filter(action="invitation.accepted").count() == 1
