import pytest

from accounts.models import AuditEvent
from credits.models import CreditAccount, LedgerEntry


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.mark.django_db
def test_grant_form_goes_through_the_service_with_the_admin_as_reference(admin_client, admin_user, workspace):
    form = admin_client.get("/admin/credits/creditaccount/grant/")
    key = form.context["form"].initial["idempotency_key"]
    data = {"workspace": workspace.pk, "amount": 40, "reason": "goodwill", "idempotency_key": key}

    first = admin_client.post("/admin/credits/creditaccount/grant/", data)
    admin_client.post("/admin/credits/creditaccount/grant/", data)  # double submit

    assert first.status_code == 302
    entry = LedgerEntry.objects.get()
    assert (entry.kind, entry.amount, entry.reference) == ("grant", 40, f"admin:{admin_user.pk}")
    assert entry.metadata["reason"] == "goodwill"
    assert CreditAccount.objects.get(workspace=workspace).balance == 40
    (event,) = AuditEvent.objects.filter(action="credits.granted")  # once, despite the double submit
    assert (event.workspace_id, event.actor_id, event.target) == (
        workspace.pk,
        admin_user.pk,
        f"ledger_entry:{entry.pk}",
    )
    assert event.details == {"amount": 40, "reason": "goodwill", "balance_after": 40}


@pytest.mark.django_db
def test_grant_form_rejects_non_positive_amounts(admin_client, workspace):
    response = admin_client.post(
        "/admin/credits/creditaccount/grant/",
        {"workspace": workspace.pk, "amount": 0, "idempotency_key": "x"},
    )

    assert response.status_code == 200
    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
def test_ledger_is_read_only_in_the_admin(admin_client, user, workspace, fund):
    entry = fund(workspace, 5)

    assert admin_client.get("/admin/credits/ledgerentry/").status_code == 200
    assert admin_client.get("/admin/credits/ledgerentry/?kind=grant&shortfall=yes").status_code == 200
    found = admin_client.get("/admin/credits/ledgerentry/", {"q": user.email})  # the owner's email
    assert list(found.context["cl"].result_list) == [entry]
    assert admin_client.get("/admin/credits/ledgerentry/add/").status_code == 403
    admin_client.post(f"/admin/credits/ledgerentry/{entry.pk}/change/", {"amount": 999})
    assert (
        admin_client.post(f"/admin/credits/ledgerentry/{entry.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert LedgerEntry.objects.get(pk=entry.pk).amount == 5


@pytest.mark.django_db
def test_reconcile_view_reports_drift(admin_client, workspace, fund):
    fund(workspace, 5)
    assert "No drift" in admin_client.get("/admin/credits/creditaccount/reconcile/").content.decode()

    CreditAccount.objects.filter(workspace=workspace).update(balance=9)
    html = admin_client.get("/admin/credits/creditaccount/reconcile/").content.decode()
    assert f"<td>{workspace.pk}</td><td>9</td><td>5</td>" in html


@pytest.mark.django_db
def test_catalogue_admin_pages_render(admin_client, catalogue, workspace, fund):
    fund(workspace, 5)
    assert admin_client.get("/admin/credits/creditpack/").status_code == 200
    assert admin_client.get("/admin/credits/endpointcost/").status_code == 200
    for url in (
        "/admin/credits/creditaccount/",
        f"/admin/credits/creditaccount/?q={workspace.slug}",
        "/admin/credits/credithold/?q=x",
        "/admin/credits/creditpurchase/?q=x",
        "/admin/credits/upsellevent/",
    ):
        assert admin_client.get(url).status_code == 200, url
