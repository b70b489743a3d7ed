"""``POST /api/credits/grants`` (operators) and ``GET /api/credits/lots`` (the workspace)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import AuditEvent
from accounts.services import api_key_create
from credits.models import CreditAccount, CreditLot, LedgerEntry
from credits.services import credit_grant

URL = "/api/credits/grants"


@pytest.fixture
def staff_client(admin_user):
    client = APIClient()
    client.force_login(admin_user)
    return client


def _body(workspace, **fields):
    return {"workspace_id": workspace.pk, "credits": 50, "reason": "launch week", **fields}


@pytest.mark.django_db
def test_staff_grants_promotional_credits_with_an_expiry(staff_client, admin_user, workspace):
    expires_at = (timezone.now() + timedelta(days=14)).replace(microsecond=0)

    response = staff_client.post(URL, _body(workspace, expires_at=expires_at.isoformat()), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    lot = CreditLot.objects.get()
    assert body["id"] == lot.pk and body["workspace_id"] == workspace.pk
    assert (body["kind"], body["credits"], body["reason"], body["balance_after"]) == (
        "promotional",
        50,
        "launch week",
        50,
    )
    assert (lot.kind, lot.remaining, lot.expires_at, lot.reason) == (
        "promotional",
        50,
        expires_at,
        "launch week",
    )
    entry = LedgerEntry.objects.get()
    assert (entry.kind, entry.reference, body["ledger_entry_id"]) == (
        "grant",
        f"admin:{admin_user.pk}",
        entry.pk,
    )
    assert CreditAccount.objects.get(workspace=workspace).balance == 50
    (event,) = AuditEvent.objects.filter(action="credits.granted")
    assert event.details["expires_at"] == expires_at.isoformat()


@pytest.mark.django_db
def test_a_grant_without_expiry_never_expires_and_a_retried_key_grants_once(admin_user, workspace):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=admin_user).key}")

    first = client.post(URL, _body(workspace), format="json", HTTP_IDEMPOTENCY_KEY="promo-7")
    again = client.post(URL, _body(workspace), format="json", HTTP_IDEMPOTENCY_KEY="promo-7")

    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json() and first.json()["expires_at"] is None
    assert CreditAccount.objects.get(workspace=workspace).balance == 50


@pytest.mark.django_db
def test_non_staff_is_refused(user, workspace):
    client = APIClient()
    client.force_login(user)  # the workspace's own owner, but not an operator

    assert client.post(URL, _body(workspace), format="json").status_code == 403
    _key, plaintext = api_key_create(workspace=workspace, created_by=user, name="k")
    proxy_key = APIClient()
    proxy_key.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert proxy_key.post(URL, _body(workspace), format="json").status_code in (401, 403)
    assert APIClient().post(URL, _body(workspace), format="json").status_code in (401, 403)
    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"credits": -5}, "credits"),
        ({"credits": 0}, "credits"),
        ({"credits": 2.5}, "credits"),
        ({"credits": "10"}, "credits"),
        ({"credits": True}, "credits"),
        ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "next week"}, "expires_at"),
        ({"reason": ""}, "reason"),
        ({"workspace_id": 999_999_999}, "workspace_id"),
    ],
)
def test_bad_input_is_a_400_that_names_the_field(staff_client, workspace, fields, param):
    response = staff_client.post(URL, _body(workspace, **fields), format="json")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param
    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
def test_a_user_id_is_not_a_workspace_id(staff_client, user):
    response = staff_client.post(URL, {"workspace_id": user.pk, "credits": 5, "reason": "x"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "workspace_id"


@pytest.mark.django_db
def test_the_workspace_lists_its_lots_in_spending_order_with_their_expiry(
    user_client, workspace, fund, admin_user
):
    fund(workspace, 20)
    soon = timezone.now() + timedelta(days=3)
    credit_grant(workspace=workspace, amount=5, admin_user=admin_user, reason="welcome", expires_at=soon)

    response = user_client.get("/api/credits/lots")

    assert response.status_code == 200
    lots = response.json()
    assert [(lot["kind"], lot["remaining"], lot["reason"]) for lot in lots] == [
        ("promotional", 5, "welcome"),
        ("promotional", 20, ""),
    ]
    assert lots[0]["expiresAt"] is not None and lots[1]["expiresAt"] is None


@pytest.mark.django_db
def test_lots_of_another_workspace_are_not_listed(user_client, other_workspace, fund):
    fund(other_workspace, 30)

    response = user_client.get("/api/credits/lots")

    assert response.status_code == 200 and response.json() == []
