"""Factories for the dashboards tests. They build other apps' rows directly: fixtures for
hand-computed expectations, never a code path of the product."""

import uuid
from decimal import Decimal

import factory
from django.utils import timezone

from accounts.tests.factories import ApiKeyFactory, UserFactory
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
    "upsell_event_create",
)


class RollupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UsageDailyRollup

    user = factory.SubFactory(UserFactory)
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

    user = factory.SubFactory(UserFactory)
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


def credit_purchase_create(*, user, amount_minor: int, currency: str = "eur", credits: int = 100):
    """A paid pack as credits fulfils it: the purchase row and its ledger entry."""
    key = f"test-purchase:{uuid.uuid4().hex}"
    entry = LedgerEntry.objects.create(
        user=user, kind=LedgerEntry.Kind.PURCHASE, amount=credits, balance_after=credits, idempotency_key=key
    )
    return CreditPurchase.objects.create(
        user=user,
        checkout_reference=f"cs_{uuid.uuid4().hex}",
        credits=credits,
        amount_minor=amount_minor,
        currency=currency,
        ledger_entry=entry,
    )


def upsell_event_create(*, user, kind=UpsellEvent.Kind.VIEW):
    return UpsellEvent.objects.create(user=user, kind=kind)
