"""Factories for the dashboards tests. They build other apps' rows directly: fixtures for
hand-computed expectations, never a code path of the product. Tenant rows belong to a
workspace: a new user's personal one unless the test names another (``team_workspace_create``)."""

import uuid
from decimal import Decimal

import factory
from django.utils import timezone

from accounts.models import Workspace
from accounts.tests.factories import ApiKeyFactory, UserFactory, member_add, team_workspace
from accounts.tests.factories import SuperuserFactory as StaffFactory
from billing.models import StripeEvent
from billing.tests.factories import SubscriptionFactory
from credits.models import CreditPurchase, LedgerEntry, UpsellEvent
from organizations.tests.factories import OrganizationFactory, UsageReportFactory
from proxy.models import DailySpend, UsageDailyRollup, UsageEvent

__all__ = (
    "ApiKeyFactory",
    "DailySpendFactory",
    "OrganizationFactory",
    "RollupFactory",
    "StaffFactory",
    "StripeEventFactory",
    "SubscriptionFactory",
    "UsageEventFactory",
    "UsageReportFactory",
    "UserFactory",
    "credit_purchase_create",
    "invoice_paid_event",
    "personal_workspace_new",
    "team_workspace_create",
    "upsell_event_create",
)


def personal_workspace_new() -> Workspace:
    """A new customer: a new user's personal workspace."""
    return UserFactory().personal_workspace


def team_workspace_create(*, owner, members: dict | None = None, name: str = "Acme team") -> Workspace:
    """A shared workspace: ``owner`` as its owner, ``members`` as ``{user: role}``."""
    workspace = team_workspace(owner=owner, name=name)
    for member, role in (members or {}).items():
        member_add(workspace, role=role, user=member)
    return workspace


class RollupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UsageDailyRollup

    workspace = factory.LazyFunction(personal_workspace_new)
    provider = "deepseek"
    day = factory.LazyFunction(lambda: timezone.now().date())
    requests = 1
    tokens = 0
    emails = 0
    cost_usd = Decimal("0")
    errors = 0
    fallbacks = 0


class UsageEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UsageEvent

    workspace = factory.LazyFunction(personal_workspace_new)
    service = "router"
    endpoint = "/v1/chat/completions"
    provider = "deepseek"
    model = "gpt-4o-mini"
    total_tokens = 100
    status_code = 200
    latency_ms = 120


class DailySpendFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DailySpend

    day = factory.LazyFunction(lambda: timezone.now().date())
    spent_usd = Decimal("0")


class StripeEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StripeEvent

    stripe_event_id = factory.Sequence(lambda n: f"evt_dash_{n}")
    type = "customer.subscription.updated"
    payload = factory.LazyFunction(dict)
    status = StripeEvent.Status.PROCESSED
    received_at = factory.LazyFunction(timezone.now)


def invoice_paid_event(*, invoice_id: str, subscription: str, amount_paid: int, currency: str = "eur", **kw):
    """An ``invoice.paid`` event stored as billing stores it (recent API: parent.subscription_details)."""
    payload = {
        "id": f"evt_{invoice_id}",
        "type": "invoice.paid",
        "data": {
            "object": {
                "id": invoice_id,
                "object": "invoice",
                "amount_paid": amount_paid,
                "currency": currency,
                "parent": {"subscription_details": {"subscription": subscription}},
            }
        },
    }
    return StripeEventFactory(type="invoice.paid", payload=payload, **kw)


def credit_purchase_create(*, workspace, amount_minor: int, currency: str = "eur", credits: int = 100):
    """A paid pack as credits fulfils it: the purchase row and its ledger entry."""
    key = f"test-purchase:{uuid.uuid4().hex}"
    entry = LedgerEntry.objects.create(
        workspace=workspace,
        kind=LedgerEntry.Kind.PURCHASE,
        amount=credits,
        balance_after=credits,
        idempotency_key=key,
    )
    return CreditPurchase.objects.create(
        workspace=workspace,
        checkout_reference=f"cs_{uuid.uuid4().hex}",
        credits=credits,
        amount_minor=amount_minor,
        currency=currency,
        ledger_entry=entry,
    )


def upsell_event_create(*, workspace, kind=UpsellEvent.Kind.VIEW):
    return UpsellEvent.objects.create(workspace=workspace, kind=kind)
