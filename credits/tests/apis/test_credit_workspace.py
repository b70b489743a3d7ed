"""Credits belong to the workspace: every member spends the same balance, a proxy key spends its
own workspace's credits, and only owners, admins and billing members buy packs."""

import threading
import uuid

import pytest
from django.db import connection
from django.db.models import Sum
from rest_framework.test import APIClient

from accounts.models import Membership, Role, Workspace
from accounts.services import api_key_create
from credits.models import CreditAccount, LedgerEntry
from credits.services import InsufficientCredits, credit_grant, credit_hold, credit_hold_settle
from credits.tests.factories import EndpointCostFactory, StaffFactory, UserFactory, seed_catalogue

BUY = {"packId": "pack_500", "successUrl": "http://testserver/ok", "cancelUrl": "http://testserver/no"}


def _team(*members: tuple) -> Workspace:
    """A team workspace with these ``(user, role)`` members."""
    workspace = Workspace.objects.create(name="Acme", slug=f"acme-{uuid.uuid4().hex[:8]}")
    for person, role in members:
        Membership.objects.create(workspace=workspace, user=person, role=role)
    return workspace


def _bearer(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


def _key_client(workspace, person) -> APIClient:
    """A client holding a new proxy key that ``person`` created in ``workspace``."""
    _key, plaintext = api_key_create(workspace=workspace, created_by=person, name="member key")
    return _bearer(plaintext)


def _ledger_sum(workspace) -> int:
    return LedgerEntry.objects.filter(workspace=workspace).aggregate(s=Sum("amount"))["s"] or 0


@pytest.fixture
def simulated_checkout(settings):
    settings.DEBUG = True
    settings.SIMULATED_CHECKOUT_ENABLED = True
    settings.STRIPE_SECRET_KEY = ""
    settings.SITE_URL = "http://testserver"
    settings.CHECKOUT_REDIRECT_HOSTS = ["testserver"]


# --- roles -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_developer_cannot_buy_a_pack(catalogue, simulated_checkout):
    developer = UserFactory()
    team = _team((UserFactory(), Role.OWNER), (developer, Role.DEVELOPER))
    client = APIClient()
    client.force_authenticate(developer)

    response = client.post("/api/credits/buy", BUY, format="json", HTTP_X_WORKSPACE=str(team.pk))

    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "forbidden"
    assert error["required_role"] == ["owner", "admin", "billing"]
    with_key = _key_client(team, developer).post("/api/credits/buy", BUY, format="json")
    assert with_key.status_code == 403  # a key acts with its creator's role
    assert not CreditAccount.objects.filter(workspace=team).exists()


@pytest.mark.django_db
def test_a_billing_member_buys_a_pack_for_the_workspace(catalogue, simulated_checkout):
    accountant = UserFactory()
    team = _team((UserFactory(), Role.OWNER), (accountant, Role.BILLING))
    client = APIClient()
    client.force_authenticate(accountant)

    response = client.post("/api/credits/buy", BUY, format="json", HTTP_X_WORKSPACE=team.slug)
    paid = client.post(response.json()["checkoutUrl"].replace("http://testserver", ""), {"action": "pay"})

    assert response.status_code == 200 and paid.status_code == 302
    assert CreditAccount.objects.get(workspace=team).balance == 500
    assert not CreditAccount.objects.filter(workspace=accountant.personal_workspace).exists()
    balance = client.get("/api/credits/balance", HTTP_X_WORKSPACE=str(team.pk)).json()
    assert balance["balance"] == 500


@pytest.mark.django_db
def test_any_member_reads_the_balance_and_spends_with_their_key(catalogue, fund):
    developer = UserFactory()
    team = _team((UserFactory(), Role.OWNER), (developer, Role.DEVELOPER))
    fund(team, 20)
    fund(developer.personal_workspace, 7)
    client = _key_client(team, developer)

    body = {"endpoint": "/api/ai/generate", "idempotencyKey": "dev-1"}
    consumed = client.post("/api/credits/consume", body, format="json")
    balance = client.get("/api/credits/balance").json()
    # The header cannot move a key to another workspace: the key's own one pays.
    header = client.get("/api/credits/balance", HTTP_X_WORKSPACE=str(developer.personal_workspace.pk))

    assert consumed.status_code == 200 and consumed.json()["balanceAfter"] == 15
    assert balance["balance"] == header.json()["balance"] == 15
    assert CreditAccount.objects.get(workspace=developer.personal_workspace).balance == 7


@pytest.mark.django_db
def test_a_workspace_the_caller_is_not_in_answers_404(catalogue, fund, user_client, other_workspace):
    fund(other_workspace, 9)
    entry = LedgerEntry.objects.get(workspace=other_workspace)

    for url in ("/api/credits/balance", "/api/credits/transactions", f"/api/credits/transactions/{entry.pk}"):
        response = user_client.get(url, HTTP_X_WORKSPACE=str(other_workspace.pk))
        assert response.status_code == 404, url
        assert response.json()["error"]["code"] == "not_found"
    spend = user_client.post(
        "/api/credits/consume",
        {"endpoint": "/api/ai/generate", "idempotencyKey": "x"},
        format="json",
        HTTP_X_WORKSPACE=other_workspace.slug,
    )
    assert spend.status_code == 404
    assert CreditAccount.objects.get(workspace=other_workspace).balance == 9


@pytest.mark.django_db
def test_members_share_the_idempotency_keys_of_their_workspace(catalogue, fund):
    """A retried call is the workspace's, whoever's key sends it again: charged once."""
    owner, developer = UserFactory(), UserFactory()
    team = _team((owner, Role.OWNER), (developer, Role.DEVELOPER))
    fund(team, 20)
    body = {"endpoint": "/api/ai/generate", "idempotencyKey": "job-7"}

    first = _key_client(team, owner).post("/api/credits/consume", body, format="json").json()
    again = _key_client(team, developer).post("/api/credits/consume", body, format="json").json()

    assert (first["replayed"], again["replayed"]) == (False, True)
    assert CreditAccount.objects.get(workspace=team).balance == 15


# --- concurrency -------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_members_spending_the_shared_credits_concurrently_never_go_below_zero():
    """An owner's key (consume API) and a developer's proxy calls (hold → settle) race for the
    same 100 credits, 3 a call: exactly 33 calls are paid, the balance never goes negative and
    it equals the sum of the ledger afterwards."""
    seed_catalogue()
    EndpointCostFactory(endpoint="/api/test/three", per_call=3)
    owner, developer = UserFactory(), UserFactory()
    team = _team((owner, Role.OWNER), (developer, Role.DEVELOPER))
    credit_grant(workspace=team, amount=100, admin_user=StaffFactory())
    _key, owner_key = api_key_create(workspace=team, created_by=owner, name="owner key")
    results: list[str] = []
    barrier = threading.Barrier(50)

    def owner_call(n: int) -> None:
        try:
            barrier.wait()
            body = {"endpoint": "/api/test/three", "idempotencyKey": f"owner-{n}"}
            status = _bearer(owner_key).post("/api/credits/consume", body, format="json").status_code
            results.append({200: "ok", 402: "402"}.get(status, str(status)))
        finally:
            connection.close()

    def developer_call(n: int) -> None:
        try:
            barrier.wait()
            try:
                hold = credit_hold(workspace=team, amount=3, reference=f"dev-{n}", endpoint="/api/test/three")
            except InsufficientCredits:
                results.append("402")
                return
            credit_hold_settle(hold=hold, actual=3, idempotency_key=f"proxy-call:dev-{n}")
            results.append("ok")
        finally:
            connection.close()

    threads = [threading.Thread(target=owner_call, args=(n,)) for n in range(25)]
    threads += [threading.Thread(target=developer_call, args=(n,)) for n in range(25)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(set(results)) == ["402", "ok"]  # nothing else (no 500, no 409)
    assert results.count("ok") == 33 and results.count("402") == 17
    account = CreditAccount.objects.get(workspace=team)
    assert (account.balance, account.held) == (1, 0)
    assert _ledger_sum(team) == account.balance
    spent = LedgerEntry.objects.filter(workspace=team, kind="consume")
    assert sorted(spent.values_list("balance_after", flat=True)) == list(range(1, 100, 3))
    assert not LedgerEntry.objects.exclude(workspace=team).exists()
