import pytest

from credits.models import CreditAccount, LedgerEntry


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.mark.django_db
def test_grant_form_goes_through_the_service_with_the_admin_as_reference(admin_client, admin_user, user):
    form = admin_client.get("/admin/credits/creditaccount/grant/")
    key = form.context["form"].initial["idempotency_key"]
    data = {"user": user.pk, "amount": 40, "reason": "goodwill", "idempotency_key": key}

    first = admin_client.post("/admin/credits/creditaccount/grant/", data)
    admin_client.post("/admin/credits/creditaccount/grant/", data)  # double submit

    assert first.status_code == 302
    entry = LedgerEntry.objects.get()
    assert (entry.kind, entry.amount, entry.reference) == ("grant", 40, f"admin:{admin_user.pk}")
    assert entry.metadata["reason"] == "goodwill"
    assert CreditAccount.objects.get(user=user).balance == 40


@pytest.mark.django_db
def test_grant_form_rejects_non_positive_amounts(admin_client, user):
    response = admin_client.post(
        "/admin/credits/creditaccount/grant/", {"user": user.pk, "amount": 0, "idempotency_key": "x"}
    )

    assert response.status_code == 200
    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
def test_ledger_is_read_only_in_the_admin(admin_client, user, fund):
    entry = fund(user, 5)

    assert admin_client.get("/admin/credits/ledgerentry/").status_code == 200
    assert admin_client.get("/admin/credits/ledgerentry/?kind=grant&shortfall=yes").status_code == 200
    assert admin_client.get("/admin/credits/ledgerentry/add/").status_code == 403
    admin_client.post(f"/admin/credits/ledgerentry/{entry.pk}/change/", {"amount": 999})
    assert (
        admin_client.post(f"/admin/credits/ledgerentry/{entry.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert LedgerEntry.objects.get(pk=entry.pk).amount == 5


@pytest.mark.django_db
def test_reconcile_view_reports_drift(admin_client, user, fund):
    fund(user, 5)
    assert "No drift" in admin_client.get("/admin/credits/creditaccount/reconcile/").content.decode()

    CreditAccount.objects.filter(user=user).update(balance=9)
    html = admin_client.get("/admin/credits/creditaccount/reconcile/").content.decode()
    assert f"<td>{user.pk}</td><td>9</td><td>5</td>" in html


@pytest.mark.django_db
def test_catalogue_admin_pages_render(admin_client, catalogue):
    assert admin_client.get("/admin/credits/creditpack/").status_code == 200
    assert admin_client.get("/admin/credits/endpointcost/").status_code == 200
    assert admin_client.get("/admin/credits/creditaccount/").status_code == 200
