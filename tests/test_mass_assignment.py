"""Mass assignment: fields a user must not set are ignored (or refused) on every write endpoint.

Each request below is otherwise valid and carries the privileged fields an attacker would try
(balance, plan, is_staff, scope=global, another user's id, prices, statuses); the stored rows
must hold only what the server decided.
"""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey, ProviderCredential, User
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
    "user": None,  # filled with the victim's id per test
    "user_id": None,
    "owner": None,
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
    return {**PRIVILEGED, "user": user_b.pk, "user_id": user_b.pk, "owner": user_b.pk}


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
    assert not CreditAccount.objects.filter(user=user, balance__gt=0).exists()
    assert not Subscription.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_api_key_create_and_rotate_belong_to_the_caller(client_a, user_a, user_b, hostile):
    response = client_a.post("/api/keys", {**hostile, "name": "mine"}, format="json")

    assert response.status_code == 201
    key = ApiKey.objects.get(pk=response.json()["id"])
    assert key.user_id == user_a.pk and key.name == "mine"
    assert key.key_hash != hostile["key_hash"] and key.expires_at is None and key.revoked_at is None
    assert not ApiKey.objects.filter(user=user_b).exists()

    rotated = client_a.post(f"/api/keys/{key.pk}/rotate", hostile, format="json")

    assert rotated.status_code == 201
    assert ApiKey.objects.get(pk=rotated.json()["id"]).user_id == user_a.pk
    assert not ApiKey.objects.filter(user=user_b).exists()


@pytest.mark.django_db
def test_personal_provider_key_cannot_become_global_or_someone_elses(client_a, user_a, user_b, hostile):
    response = client_a.put(
        "/api/provider-keys/deepseek", {**hostile, "key": "sk-mallory-0123456789"}, format="json"
    )

    assert response.status_code == 200
    (credential,) = ProviderCredential.objects.all()
    assert (credential.scope, credential.user_id) == (ProviderCredential.Scope.PERSONAL, user_a.pk)


@pytest.mark.django_db
def test_credit_consume_charges_the_catalogue_price(client_a, user_a, catalog, staff, hostile):
    credit_grant(user=user_a, amount=20, admin_user=staff)

    response = client_a.post(
        "/api/credits/consume",
        {**hostile, "endpoint": "/api/ai/generate", "idempotencyKey": "mass-1", "units": 0},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["charged"] == 5  # the endpoint's per-call cost, not "cost": 0
    assert CreditAccount.objects.get(user=user_a).balance == 15
    assert not LedgerEntry.objects.filter(user_id=hostile["user_id"]).exists()


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
    assert checkout.user_id == user_a.pk
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
    assert checkout.user_id == user_a.pk
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

    assert list(ApiKey.objects.values_list("user_id", flat=True)) == [user_a.pk]
    assert not ProviderCredential.objects.filter(scope=ProviderCredential.Scope.GLOBAL).exists()
    assert not ProviderCredential.objects.filter(user=user_b).exists()
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
    assert list(UsageEvent.objects.values_list("user_id", flat=True)) == [user_a.pk]
