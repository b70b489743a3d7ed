import itertools
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail

import billing.tests.stripe_events as se
from accounts.models import ApiKey
from accounts.services import api_key_create
from billing import registry
from billing.models import CheckoutFulfilment, CheckoutSession, Plan, StripeEvent, Subscription
from billing.selectors import plan_for_user_get
from billing.services import (
    StripeEventProcessingError,
    stripe_event_process,
    stripe_event_reprocess,
    stripe_event_store,
)

from ..factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def deliver(django_capture_on_commit_callbacks):
    """Store then process an event, running on-commit work (emails, cache invalidation)."""

    def _deliver(evt):
        with django_capture_on_commit_callbacks(execute=True):
            row, _ = stripe_event_store(event=evt)
            return stripe_event_process(event=row)

    return _deliver


def test_paid_checkout_activates_the_plan_creates_a_key_and_emails_a_reveal_link(deliver):
    user = UserFactory()
    row = deliver(se.event("checkout.session.completed", se.checkout_session(user=user)))

    assert row.status == StripeEvent.Status.PROCESSED
    sub = Subscription.objects.get(user=user)
    assert (sub.plan.code, sub.status, sub.stripe_subscription_id) == ("business", "active", "sub_test_1")
    assert sub.checkout_reference == "cs_test_session_1"
    assert sub.current_period_end > sub.activated_at
    assert plan_for_user_get(user=user).code == "business"
    assert ApiKey.objects.filter(user=user).count() == 1
    assert len(mail.outbox) == 1
    body = mail.outbox[0].body
    assert "Business plan is active" in body
    assert "/dashboard/keys/reveal/" in body
    assert "sk_agentai_" not in body  # a link, never the key
    assert CheckoutFulfilment.objects.get().status == CheckoutFulfilment.Status.FULFILLED


def test_duplicate_delivery_does_nothing(deliver):
    user = UserFactory()
    evt = se.event("checkout.session.completed", se.checkout_session(user=user))
    deliver(evt)
    row, created = stripe_event_store(event=evt)
    assert created is False
    deliver(evt)
    assert Subscription.objects.count() == 1
    assert ApiKey.objects.filter(user=user).count() == 1
    assert len(mail.outbox) == 1
    assert StripeEvent.objects.get().attempts == 1


def test_completed_and_async_succeeded_fulfil_once(deliver):
    user = UserFactory()
    session = se.checkout_session(user=user)
    deliver(se.event("checkout.session.completed", session))
    deliver(se.event("checkout.session.async_payment_succeeded", session))
    assert Subscription.objects.count() == 1
    assert ApiKey.objects.filter(user=user).count() == 1
    assert len(mail.outbox) == 1


def test_delayed_payment_waits_for_async_success(deliver):
    user = UserFactory()
    pending = deliver(
        se.event("checkout.session.completed", se.checkout_session(user=user, payment_status="unpaid"))
    )
    assert pending.status == StripeEvent.Status.IGNORED
    assert not Subscription.objects.exists()
    deliver(se.event("checkout.session.async_payment_succeeded", se.checkout_session(user=user)))
    assert Subscription.objects.get(user=user).status == "active"


def test_delayed_payment_failure_fulfils_nothing(deliver, simulated_settings):
    user = UserFactory()
    CheckoutSession.objects.create(
        user=user,
        kind="plan",
        mode="subscription",
        line_item={},
        success_url="http://localhost/",
        cancel_url="http://localhost/",
        checkout_reference="cs_test_session_1",
    )
    deliver(se.event("checkout.session.completed", se.checkout_session(user=user, payment_status="unpaid")))
    deliver(
        se.event(
            "checkout.session.async_payment_failed", se.checkout_session(user=user, payment_status="unpaid")
        )
    )
    assert not Subscription.objects.exists()
    assert CheckoutFulfilment.objects.get().status == CheckoutFulfilment.Status.FAILED
    assert CheckoutSession.objects.get().status == CheckoutSession.Status.PAYMENT_FAILED
    assert plan_for_user_get(user=user).code == "free"


def test_user_with_a_key_gets_no_new_key(deliver):
    user = UserFactory()
    api_key_create(user=user, name="mine")
    deliver(se.event("checkout.session.completed", se.checkout_session(user=user)))
    assert ApiKey.objects.filter(user=user).count() == 1
    assert "/dashboard/keys/reveal/" not in mail.outbox[0].body


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_every_ordering_of_created_completed_updated_deleted_ends_canceled(order, deliver):
    user = UserFactory()
    t0 = int(time.time()) - 100
    events = [
        se.event(
            "customer.subscription.created", se.subscription(user=user, status="incomplete"), created=t0
        ),
        se.event("checkout.session.completed", se.checkout_session(user=user), created=t0 + 1),
        se.event(
            "customer.subscription.updated",
            se.subscription(user=user, status="active", cancel_at_period_end=True),
            created=t0 + 2,
        ),
        se.event(
            "customer.subscription.deleted", se.subscription(user=user, status="canceled"), created=t0 + 3
        ),
    ]
    for index in order:
        deliver(events[index])
    sub = Subscription.objects.get()
    assert sub.status == Subscription.Status.CANCELED
    assert sub.ended_at is not None
    assert plan_for_user_get(user=user).code == "free"
    assert ApiKey.objects.filter(user=user).count() <= 1


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_every_ordering_of_created_completed_updated_ends_active(order, deliver):
    user = UserFactory()
    t0 = int(time.time()) - 100
    events = [
        se.event(
            "customer.subscription.created", se.subscription(user=user, status="incomplete"), created=t0
        ),
        se.event("checkout.session.completed", se.checkout_session(user=user), created=t0 + 1),
        se.event(
            "customer.subscription.updated", se.subscription(user=user, status="active"), created=t0 + 1
        ),
    ]
    for index in order:
        deliver(events[index])
    sub = Subscription.objects.get()
    assert (sub.status, sub.plan.code) == ("active", "business")
    assert sub.activated_at is not None
    assert ApiKey.objects.filter(user=user).count() == 1
    assert len(mail.outbox) == 1


def test_cancel_at_period_end_returns_to_free_at_period_end(deliver):
    user = UserFactory()
    deliver(se.event("checkout.session.completed", se.checkout_session(user=user)))
    period_end = int(time.time()) + 3600
    deliver(
        se.event(
            "customer.subscription.updated",
            se.subscription(user=user, status="active", cancel_at_period_end=True, period_end=period_end),
        )
    )
    end = datetime.fromtimestamp(period_end, tz=UTC)
    sub = Subscription.objects.get()
    assert (sub.cancel_at_period_end, sub.current_period_end) == (True, end)
    assert plan_for_user_get(user=user, now=end - timedelta(seconds=1)).code == "business"
    assert plan_for_user_get(user=user, now=end).code == "free"
    deliver(
        se.event(
            "customer.subscription.deleted", se.subscription(user=user, status="canceled"), created=period_end
        )
    )
    assert plan_for_user_get(user=user).code == "free"


def test_plan_change_from_the_portal_follows_the_price(deliver):
    user = UserFactory()
    Plan.objects.filter(code="scale").update(stripe_price_id="price_scale")
    deliver(se.event("checkout.session.completed", se.checkout_session(user=user)))
    deliver(se.event("customer.subscription.updated", se.subscription(user=user, price_id="price_scale")))
    assert plan_for_user_get(user=user).code == "scale"


def test_failed_renewal_is_past_due_then_paid_invoice_restores(deliver):
    user = UserFactory()
    now = int(time.time())
    deliver(se.event("checkout.session.completed", se.checkout_session(user=user), created=now - 10))
    deliver(
        se.event("invoice.payment_failed", se.invoice(period_end=now + 86400, paid=False), created=now - 5)
    )
    sub = Subscription.objects.get()
    assert sub.status == Subscription.Status.PAST_DUE
    assert plan_for_user_get(user=user).code == "business"  # kept while Stripe retries
    assert "payment failed" in mail.outbox[-1].subject
    next_end = now + 40 * 86400
    deliver(se.event("invoice.paid", se.invoice(period_end=next_end), created=now))
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.ACTIVE
    assert sub.current_period_end == datetime.fromtimestamp(next_end, tz=UTC)


def test_foreign_subscription_is_left_to_other_handlers(deliver, monkeypatch):
    seen = []
    monkeypatch.setattr(
        registry,
        "_event_handlers",
        {"customer.subscription.updated": [lambda *, event: seen.append(event["id"])]},
    )
    user = UserFactory()
    evt = se.event(
        "customer.subscription.updated", se.subscription(user=user, subscription_id="sub_org", metadata={})
    )
    row = deliver(evt)
    assert seen == [evt["id"]]
    assert row.status == StripeEvent.Status.PROCESSED
    assert not Subscription.objects.exists()


def test_unknown_event_type_is_stored_and_ignored(deliver):
    row = deliver(se.event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert row.status == StripeEvent.Status.IGNORED


def test_failure_is_recorded_rolled_back_and_reprocessable(django_capture_on_commit_callbacks):
    user = UserFactory()
    evt = se.event("checkout.session.completed", se.checkout_session(user=user, plan_code="gold"))
    row, _ = stripe_event_store(event=evt)
    with pytest.raises(StripeEventProcessingError):
        stripe_event_process(event=row)
    row.refresh_from_db()
    assert (row.status, row.attempts) == (StripeEvent.Status.FAILED, 1)
    assert "missing user, plan or subscription" in row.error
    assert not CheckoutFulfilment.objects.exists()  # rolled back with the handler

    Plan.objects.create(code="gold", name="Gold", price_minor=100)
    with django_capture_on_commit_callbacks(execute=True):
        row = stripe_event_reprocess(event=row)
    assert (row.status, row.attempts, row.error) == (StripeEvent.Status.PROCESSED, 2, "")
    assert Subscription.objects.get(user=user).plan.code == "gold"
