"""/api/workspaces and /api/workspaces/{id}: list, create, read, rename, delete."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import AuditEvent, Membership, Workspace
from accounts.registry import workspace_delete_guard_register, workspace_delete_guard_unregister
from accounts.tests.factories import api_key_for
from billing.models import PaymentTransaction
from billing.selectors import workspace_delete_refusal_get

from .conftest import client_for

pytestmark = pytest.mark.django_db


def test_list_shows_the_callers_workspaces_with_their_role_personal_first(team, outsider):
    response = client_for(team.developer).get("/api/workspaces")

    assert response.status_code == 200
    body = response.json()
    personal = team.developer.personal_workspace
    assert body == [
        {"id": personal.pk, "name": personal.name, "slug": personal.slug, "role": "owner", "personal": True},
        {
            "id": team.workspace.pk,
            "name": "Acme",
            "slug": team.workspace.slug,
            "role": "developer",
            "personal": False,
        },
    ]
    assert [w["id"] for w in client_for(outsider).get("/api/workspaces").json()] == [
        outsider.personal_workspace.pk
    ]


def test_list_needs_authentication(api_client):
    response = api_client.get("/api/workspaces")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_list_is_two_queries_whatever_the_number_of_workspaces(team, django_assert_max_num_queries):
    client = client_for(team.owner)
    for n in range(5):
        client.post("/api/workspaces", {"name": f"Extra {n}"}, format="json")

    with django_assert_max_num_queries(2):
        response = client.get("/api/workspaces")
    assert len(response.json()) == 7


def test_create_makes_the_caller_owner_and_records_it(outsider):
    response = client_for(outsider).post("/api/workspaces", {"name": "  Rocket Lab  "}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Rocket Lab" and body["role"] == "owner" and body["personal"] is False
    assert body["slug"].startswith("rocket-lab-")
    workspace = Workspace.objects.get(pk=body["id"])
    assert Membership.objects.get(workspace=workspace).user == outsider
    event = AuditEvent.objects.get(workspace=workspace)
    assert (event.action, event.actor) == ("workspace.created", outsider)
    assert event.details == {"name": "Rocket Lab"}


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_create_refuses_an_empty_or_long_name(outsider, name):
    response = client_for(outsider).post("/api/workspaces", {"name": name}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "name"
    assert not Workspace.objects.filter(personal_owner__isnull=True).exists()


def test_get_answers_the_callers_role(team):
    response = client_for(team.billing).get(f"/api/workspaces/{team.workspace.pk}")

    assert response.status_code == 200
    assert response.json()["role"] == "billing"


def test_non_members_and_unknown_ids_get_404(team, outsider):
    client = client_for(outsider)
    for method in ("get", "patch", "delete"):
        url = f"/api/workspaces/{team.workspace.pk}"
        response = getattr(client, method)(url, {"name": "x"}, format="json")
        assert response.status_code == 404, method
        assert response.json()["error"]["code"] == "not_found"
        assert "Acme" not in response.content.decode()
    assert client.get("/api/workspaces/999999999").status_code == 404
    assert Workspace.objects.get(pk=team.workspace.pk).name == "Acme"


def test_patch_renames_and_records_the_change(team):
    response = client_for(team.admin).patch(
        f"/api/workspaces/{team.workspace.pk}", {"name": "Acme Corp"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["name"] == "Acme Corp" and response.json()["role"] == "admin"
    team.workspace.refresh_from_db()
    assert team.workspace.name == "Acme Corp"
    event = AuditEvent.objects.get(action="workspace.updated")
    assert event.actor == team.admin and event.details["name"] == {"from": "Acme", "to": "Acme Corp"}


def test_patch_by_a_developer_is_forbidden_and_says_who_may(team):
    response = client_for(team.developer).patch(
        f"/api/workspaces/{team.workspace.pk}", {"name": "Hijacked"}, format="json"
    )

    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "forbidden" and error["required_role"] == ["owner", "admin"]
    team.workspace.refresh_from_db()
    assert team.workspace.name == "Acme"


def test_delete_by_the_owner_removes_it_and_keeps_an_audit_event(team):
    workspace_id = team.workspace.pk

    response = client_for(team.owner).delete(f"/api/workspaces/{workspace_id}")

    assert response.status_code == 204
    assert not Workspace.objects.filter(pk=workspace_id).exists()
    assert not Membership.objects.filter(workspace_id=workspace_id).exists()
    event = AuditEvent.objects.get(action="workspace.deleted")
    assert event.workspace is None and event.target == f"workspace:{workspace_id}"
    assert event.details["workspace_id"] == workspace_id and event.details["name"] == "Acme"


@pytest.mark.parametrize("role", ["admin", "billing", "developer"])
def test_only_owners_delete(team, role):
    response = client_for(team.member(role)).delete(f"/api/workspaces/{team.workspace.pk}")

    assert response.status_code == 403
    assert response.json()["error"]["required_role"] == ["owner"]
    assert Workspace.objects.filter(pk=team.workspace.pk).exists()


def test_a_personal_workspace_cannot_be_deleted(outsider):
    response = client_for(outsider).delete(f"/api/workspaces/{outsider.personal_workspace.pk}")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert Workspace.objects.filter(pk=outsider.personal_workspace.pk).exists()


def test_delete_is_refused_with_every_guards_reason(team):
    def holds_money(*, workspace):
        return "It has 40 credits; spend or refund them first." if workspace.pk == team.workspace.pk else None

    def never(*, workspace):
        return None

    workspace_delete_guard_register(holds_money)
    workspace_delete_guard_register(holds_money)  # registering twice counts once
    workspace_delete_guard_register(never)
    api_key_for(team.developer, workspace=team.workspace)
    try:
        response = client_for(team.owner).delete(f"/api/workspaces/{team.workspace.pk}")
    finally:
        workspace_delete_guard_unregister(holds_money)
        workspace_delete_guard_unregister(never)

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "workspace_not_empty"
    assert error["reasons"] == [
        "It has 1 active API key; revoke them first.",
        "It has 40 credits; spend or refund them first.",
    ]
    assert Workspace.objects.filter(pk=team.workspace.pk).exists()
    assert not AuditEvent.objects.filter(action="workspace.deleted").exists()


def test_revoked_keys_do_not_block_deletion(team):
    key, _ = api_key_for(team.developer, workspace=team.workspace)
    client_for(team.owner).delete(f"/api/workspaces/{team.workspace.pk}/members/{team.developer.pk}")

    response = client_for(team.owner).delete(f"/api/workspaces/{team.workspace.pk}")

    assert response.status_code == 204


def test_a_proxy_key_acts_on_its_own_workspace_only(team):
    _, plaintext = api_key_for(team.owner, workspace=team.workspace)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")

    assert client.get(f"/api/workspaces/{team.workspace.pk}").status_code == 200
    assert client.get(f"/api/workspaces/{team.owner.personal_workspace.pk}").status_code == 404
    assert [w["id"] for w in client.get("/api/workspaces").json()] == [team.workspace.pk]


def test_the_slug_stays_when_renamed(team):
    slug = team.workspace.slug
    client_for(team.owner).patch(f"/api/workspaces/{team.workspace.pk}", {"name": "New"}, format="json")
    team.workspace.refresh_from_db()
    assert team.workspace.slug == slug


@pytest.mark.parametrize("billing_guard", [True, False], ids=["billing-guard", "protected-rows"])
def test_a_workspace_holding_payment_records_is_not_deleted(team, billing_guard):
    """Billing's guard names its kept history; without it, the rows that PROTECT the workspace
    still make a 409, not a 500."""
    PaymentTransaction.objects.create(
        workspace=team.workspace,
        gateway="chargily",
        kind="credit_pack",
        reference="chg_kept_for_good",
        amount_minor=1000,
        currency="dzd",
        status="failed",
    )
    if not billing_guard:
        workspace_delete_guard_unregister(workspace_delete_refusal_get)
    try:
        response = client_for(team.owner).delete(f"/api/workspaces/{team.workspace.pk}")
    finally:
        workspace_delete_guard_register(workspace_delete_refusal_get)

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "workspace_not_empty" and "payment" in error["reasons"][0]
    assert Workspace.objects.filter(pk=team.workspace.pk).exists()
    assert not AuditEvent.objects.filter(action="workspace.deleted").exists()
