"""The admin's "Grant promotional credits": the changelist action (several workspaces at once)
and the grant form, both with an expiry and a reason."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from credits.models import CreditAccount, CreditLot, LedgerEntry
from credits.tests.factories import UserFactory

CHANGELIST = "/admin/credits/creditaccount/"


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def accounts(fund, workspace, other_workspace):
    fund(workspace, 1)
    fund(other_workspace, 1)
    return [CreditAccount.objects.get(workspace=w) for w in (workspace, other_workspace)]


def _action(accounts, **fields):
    return {
        "action": "grant_promotional_credits",
        "_selected_action": [str(account.pk) for account in accounts],
        **fields,
    }


@pytest.mark.django_db
def test_the_action_asks_then_grants_each_selected_workspace_once(admin_client, admin_user, accounts):
    assert "grant_promotional_credits" in admin_client.get(CHANGELIST).content.decode()
    page = admin_client.post(CHANGELIST, _action(accounts))
    assert page.status_code == 200
    assert "Grant promotional credits to 2 workspace(s)" in page.content.decode()
    key = page.context["form"].initial["idempotency_key"]
    expires_at = timezone.now() + timedelta(days=10)
    data = _action(
        accounts,
        apply="1",
        amount="25",
        expires_at=expires_at.strftime("%Y-%m-%d %H:%M"),
        reason="spring promotion",
        idempotency_key=key,
    )

    done = admin_client.post(CHANGELIST, data)
    admin_client.post(CHANGELIST, data)  # double submit

    assert done.status_code == 302
    lots = CreditLot.objects.filter(reason="spring promotion").order_by("workspace_id")
    assert [(lot.workspace_id, lot.kind, lot.remaining) for lot in lots] == [
        (account.workspace_id, "promotional", 25)
        for account in sorted(accounts, key=lambda a: a.workspace_id)
    ]
    assert all(lot.expires_at is not None and lot.expires_at > timezone.now() for lot in lots)
    assert [CreditAccount.objects.get(pk=account.pk).balance for account in accounts] == [26, 26]
    assert set(LedgerEntry.objects.filter(amount=25).values_list("reference", flat=True)) == {
        f"admin:{admin_user.pk}"
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields",
    [
        {"amount": "-5", "reason": "x"},
        {"amount": "1.5", "reason": "x"},
        {"amount": "5", "reason": "x", "expires_at": "2020-01-01 00:00"},
    ],
)
def test_the_action_refuses_bad_input_and_grants_nothing(admin_client, accounts, fields):
    data = _action(accounts, apply="1", idempotency_key="k1", **fields)

    page = admin_client.post(CHANGELIST, data)

    assert page.status_code == 200 and page.context["form"].errors
    assert LedgerEntry.objects.count() == 2  # the two fixtures' grants only


@pytest.mark.django_db
def test_the_grant_form_takes_an_expiry(admin_client, workspace):
    key = admin_client.get(f"{CHANGELIST}grant/").context["form"].initial["idempotency_key"]
    expires_at = (timezone.now() + timedelta(days=3)).strftime("%Y-%m-%d %H:%M")

    response = admin_client.post(
        f"{CHANGELIST}grant/",
        {
            "workspace": workspace.pk,
            "amount": 7,
            "expires_at": expires_at,
            "reason": "sorry",
            "idempotency_key": key,
        },
    )

    assert response.status_code == 302
    lot = CreditLot.objects.get()
    assert (lot.kind, lot.remaining, lot.reason) == ("promotional", 7, "sorry")
    assert lot.expires_at.strftime("%Y-%m-%d %H:%M") == expires_at


@pytest.mark.django_db
def test_staff_without_the_grant_permission_does_not_get_the_action(client, accounts):
    clerk = UserFactory(is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_creditaccount"))
    client.force_login(clerk)

    page = client.get(CHANGELIST)

    assert page.status_code == 200
    assert "grant_promotional_credits" not in page.content.decode()
