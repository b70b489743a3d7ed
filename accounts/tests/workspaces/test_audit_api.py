"""/api/workspaces/{id}/audit: owners and admins read their workspace's log, cursor-paginated."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from accounts.services.workspaces import audit_record

from .conftest import client_for

pytestmark = pytest.mark.django_db


def _url(team) -> str:
    return f"/api/workspaces/{team.workspace.pk}/audit"


def test_the_log_pages_newest_first_with_a_cursor(team, outsider, django_assert_max_num_queries):
    start = timezone.now()
    for n in range(5):
        audit_record(
            action=f"test.{n}", actor=team.owner, workspace=team.workspace, now=start + timedelta(seconds=n)
        )
    audit_record(action="elsewhere", actor=outsider, workspace=outsider.personal_workspace, now=start)
    client = client_for(team.admin)

    with django_assert_max_num_queries(4):
        first = client.get(_url(team), {"page_size": 3})
    assert first.status_code == 200
    page = first.json()
    assert [e["action"] for e in page["results"]] == ["test.4", "test.3", "test.2"]
    assert page["previous"] is None and "cursor=" in page["next"]
    second = client.get(page["next"]).json()
    actions = [e["action"] for e in second["results"]]
    assert actions == ["test.1", "test.0", "workspace.created"]
    assert "elsewhere" not in str(page) + str(second)
    assert set(page["results"][0]) == {"id", "created_at", "action", "actor", "target", "details", "ip"}
    assert page["results"][0]["actor"] == "owner@example.com"


def test_events_with_the_same_instant_are_neither_lost_nor_repeated(team):
    now = timezone.now()
    for n in range(7):
        audit_record(action=f"same.{n}", actor=team.owner, workspace=team.workspace, now=now)
    client = client_for(team.owner)
    seen, url = [], _url(team) + "?page_size=2"
    while url:
        body = client.get(url).json()
        seen += [e["id"] for e in body["results"]]
        url = body["next"]
    assert sorted(seen) == sorted(
        AuditEvent.objects.filter(workspace=team.workspace).values_list("id", flat=True)
    )
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize("role", ["billing", "developer"])
def test_billing_and_developers_cannot_read_it(team, role):
    response = client_for(team.member(role)).get(_url(team))

    assert response.status_code == 403
    assert response.json()["error"]["required_role"] == ["owner", "admin"]


def test_outsiders_get_404_and_a_bad_cursor_is_404(team, outsider):
    assert client_for(outsider).get(_url(team)).status_code == 404
    response = client_for(team.owner).get(_url(team), {"cursor": "garbage"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_every_change_is_recorded(team, django_capture_on_commit_callbacks):
    owner = client_for(team.owner)
    base = f"/api/workspaces/{team.workspace.pk}"
    owner.patch(base, {"name": "Acme 2"}, format="json")
    owner.patch(f"{base}/members/{team.developer.pk}", {"role": "billing"}, format="json")
    owner.delete(f"{base}/members/{team.billing.pk}")
    client_for(team.developer).delete(f"{base}/members/{team.developer.pk}")
    invite = owner.post(
        f"{base}/invitations", {"email": "n@example.com", "role": "admin"}, format="json"
    ).json()
    owner.delete(f"{base}/invitations/{invite['id']}")

    actions = [e["action"] for e in owner.get(f"{base}/audit").json()["results"]]

    assert actions == [
        "invitation.revoked",
        "invitation.created",
        "member.left",
        "member.removed",
        "member.role_changed",
        "workspace.updated",
        "workspace.created",
    ]
