"""Mass assignment: fields a user must not set are ignored (or refused) on every write endpoint.

Each request below is otherwise valid and carries the privileged fields an attacker would try
(balance, plan, is_staff, scope=global, another workspace's or user's id, a role, prices,
statuses); the stored rows must hold only what the server decided.
"""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, Membership, ProviderCredential, Role, User
from accounts.tests.factories import api_key_for, global_key_for
from billing.models import CheckoutSession, Plan, Subscription
from credits.models import CreditAccount, CreditPack, LedgerEntry
from credits.services import credit_grant
from organizations.models import Organization
from proxy.models import UsageEvent

PRIVILEGED = {
    "is_staff": True,
    "is_superuser": True,
    "is_active": True,
    "balance": 1_000_000,
    "credits": 1_000_000,
    "held": 0,
    "plan": "enterprise",
    "plan_code": "enterprise",
    "scope": "global",
    "status": "active",
    "price_minor": 1,
    "amount_minor": 1,
    "amount": 1,
    "cost": 0,
    "unit_amount": 1,
    "currency": "jpy",
    "user": None,  # filled with the victim's ids per test
    "user_id": None,
    "owner": None,
    "workspace": None,
    "workspace_id": None,
    "created_by": None,
    "role": "owner",
    "id": 999_999,
    "pk": 999_999,
    "key_hash": "0" * 64,
    "prefix": "sk_agentai_XXXX",
    "expires_at": "2099-01-01T00:00:00Z",
    "revoked_at": None,
    "stripe_customer_id": "cus_attacker",
    "stripe_subscription_id": "sub_attacker",
    "billing_status": "sent",
}


@pytest.fixture
def hostile(user_b):
    workspace_b = user_b.personal_workspace.pk
    return {
        **PRIVILEGED,
        "user": user_b.pk,
        "user_id": user_b.pk,
        "owner": user_b.pk,
        "workspace": workspace_b,
        "workspace_id": workspace_b,
        "created_by": user_b.pk,
    }


@pytest.fixture
def simulated(settings):
    settings.DEBUG = True
    settings.STRIPE_SECRET_KEY = ""
    settings.SIMULATED_CHECKOUT_ENABLED = True
    settings.SITE_URL = "http://testserver"
    settings.CHECKOUT_REDIRECT_HOSTS = ["testserver"]
    return settings


@pytest.mark.django_db
def test_register_ignores_privileges(api_client, catalog, hostile):
    response = api_client.post(
        "/api/auth/register",
        {**hostile, "email": "mallory@example.com", "password": "correct-horse-battery-42"},
        format="json",
    )

    assert response.status_code == 201
    user = User.objects.get(email="mallory@example.com")
    assert (user.is_staff, user.is_superuser) == (False, False)
    # Only their own personal workspace, as its owner: no membership of the victim's.
    assert list(Membership.objects.filter(user=user).values_list("workspace_id", "role")) == [
        (user.personal_workspace.pk, Role.OWNER)
    ]
    assert not CreditAccount.objects.filter(workspace=user.personal_workspace, balance__gt=0).exists()
    assert not Subscription.objects.filter(workspace=user.personal_workspace).exists()


@pytest.mark.django_db
def test_api_key_create_and_rotate_belong_to_the_caller(client_a, user_a, user_b, hostile):
    response = client_a.post("/api/keys", {**hostile, "name": "mine"}, format="json")

    assert response.status_code == 201
    key = ApiKey.objects.get(pk=response.json()["id"])
    assert (key.workspace_id, key.created_by_id, key.name) == (
        user_a.personal_workspace.pk,
        user_a.pk,
        "mine",
    )
    assert key.key_hash != hostile["key_hash"] and key.expires_at is None and key.revoked_at is None
    assert not ApiKey.objects.filter(workspace=user_b.personal_workspace).exists()

    rotated = client_a.post(f"/api/keys/{key.pk}/rotate", hostile, format="json")

    assert rotated.status_code == 201
    new_key = ApiKey.objects.get(pk=rotated.json()["id"])
    assert (new_key.workspace_id, new_key.created_by_id) == (user_a.personal_workspace.pk, user_a.pk)
    assert not ApiKey.objects.filter(workspace=user_b.personal_workspace).exists()


@pytest.mark.django_db
def test_workspace_provider_key_cannot_become_global_or_another_workspaces(client_a, user_a, user_b, hostile):
    response = client_a.put(
        "/api/provider-keys/deepseek", {**hostile, "key": "sk-mallory-0123456789"}, format="json"
    )

    assert response.status_code == 200
    (credential,) = ProviderCredential.objects.all()
    assert (credential.scope, credential.workspace_id) == (
        ProviderCredential.Scope.WORKSPACE,
        user_a.personal_workspace.pk,
    )


@pytest.mark.django_db
def test_credit_consume_charges_the_catalogue_price(client_a, user_a, catalog, staff, hostile):
    credit_grant(workspace=user_a.personal_workspace, amount=20, admin_user=staff)

    response = client_a.post(
        "/api/credits/consume",
        {**hostile, "endpoint": "/api/ai/generate", "idempotencyKey": "mass-1", "units": 0},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["charged"] == 5  # the endpoint's per-call cost, not "cost": 0
    assert CreditAccount.objects.get(workspace=user_a.personal_workspace).balance == 15
    assert not LedgerEntry.objects.filter(workspace_id=hostile["workspace_id"]).exists()


@pytest.mark.django_db
def test_credit_buy_uses_the_pack_not_the_client_price(client_a, user_a, catalog, simulated, hostile):
    response = client_a.post(
        "/api/credits/buy",
        {
            **hostile,
            "packId": "pack_100",
            "successUrl": "http://testserver/ok",
            "cancelUrl": "http://testserver/no",
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    checkout = CheckoutSession.objects.get()
    pack = CreditPack.objects.get(code="pack_100")
    assert (checkout.workspace_id, checkout.created_by_id) == (user_a.personal_workspace.pk, user_a.pk)
    assert (checkout.amount_minor, checkout.currency) == (pack.price_minor, pack.currency)
    assert str(checkout.metadata.get("credits")) == str(pack.credits)
    assert not LedgerEntry.objects.exists()  # nothing granted before payment


@pytest.mark.django_db
def test_plan_checkout_uses_the_plan_price(client_a, user_a, catalog, simulated, hostile):
    plan = Plan.objects.filter(price_minor__gt=0, is_public=True).order_by("price_minor").first()

    response = client_a.post(
        "/api/billing/checkout",
        {
            **hostile,
            "planId": plan.code,
            "successUrl": "http://testserver/ok",
            "cancelUrl": "http://testserver/no",
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    checkout = CheckoutSession.objects.get()
    assert (checkout.workspace_id, checkout.created_by_id) == (user_a.personal_workspace.pk, user_a.pk)
    assert (checkout.amount_minor, checkout.currency) == (plan.price_minor, plan.currency)
    assert not Subscription.objects.exists()


@pytest.mark.django_db
def test_usage_report_cannot_link_or_bill_an_organization(settings, hostile):
    settings.BILLING_API_TOKEN = ["vaultai_billing_token_0123456789abcdef"]
    organization_id = uuid.uuid4()

    response = Client().post(
        "/api/usage-report",
        {
            **hostile,
            "organization_id": str(organization_id),
            "organization_name": "Acme",
            "user_count": 3,
            "timestamp": timezone.now().isoformat(),
        },
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer vaultai_billing_token_0123456789abcdef",
    )

    assert response.status_code == 200, response.content
    organization = Organization.objects.get(pk=organization_id)
    assert organization.status == Organization.Status.PENDING
    assert organization.stripe_customer_id is None and organization.stripe_subscription_id is None
    assert organization.usage_reports.get().billing_status == "unbilled"


@pytest.mark.django_db
def test_dashboard_forms_ignore_privileged_fields(session_a, user_a, user_b, hostile):
    session_a.post(
        "/dashboard/keys/", {**{k: v for k, v in hostile.items() if v is not None}, "name": "page key"}
    )
    session_a.post(
        "/accounts/profile/",
        {
            **{k: v for k, v in hostile.items() if v is not None},
            "provider": "openai",
            "key": "sk-page-0123456789",
        },
    )

    assert list(ApiKey.objects.values_list("workspace_id", "created_by_id")) == [
        (user_a.personal_workspace.pk, user_a.pk)
    ]
    assert not ProviderCredential.objects.filter(scope=ProviderCredential.Scope.GLOBAL).exists()
    assert not ProviderCredential.objects.filter(workspace=user_b.personal_workspace).exists()
    user_a.refresh_from_db()
    assert not user_a.is_staff


@pytest.mark.django_db(transaction=True)  # the proxy's database work runs in its own threads
def test_proxy_call_cannot_bill_someone_else(client_a, user_a, user_b, catalog, fake_upstream, hostile):
    global_key_for(provider="deepseek", secret="sk-operator-deepseek-0123456789")
    api_key_for(user_b)

    response = client_a.post(
        "/api/proxy/deepseek/chat",
        {**hostile, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert list(UsageEvent.objects.values_list("workspace_id", flat=True)) == [user_a.personal_workspace.pk]


@pytest.mark.django_db
def test_workspace_create_and_invite_ignore_privileges(user_a, user_b, hostile):
    """A new workspace is the caller's (owner), never someone else's; an invitation's role is
    the one asked for within the inviter's rights, and nobody joins before accepting."""
    client = APIClient()
    client.force_authenticate(user_a)

    created = client.post("/api/workspaces", {**hostile, "name": "Mine"}, format="json")

    assert created.status_code == 201, created.content
    workspace_id = created.json()["id"]
    assert workspace_id != hostile["workspace_id"]
    assert list(Membership.objects.filter(workspace_id=workspace_id).values_list("user_id", "role")) == [
        (user_a.pk, Role.OWNER)
    ]
    invited = client.post(
        f"/api/workspaces/{workspace_id}/invitations",
        {**hostile, "email": "newcomer@example.com", "role": "developer"},
        format="json",
    )

    assert invited.status_code == 201, invited.content
    assert invited.json()["role"] == "developer"
    assert not Membership.objects.filter(workspace_id=workspace_id).exclude(user=user_a).exists()
    assert not Membership.objects.filter(user=user_b).exclude(workspace=user_b.personal_workspace).exists()
