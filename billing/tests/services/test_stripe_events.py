import itertools
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail

import billing.tests.stripe_events as se
from accounts.models import ApiKey, AuditEvent
from accounts.services import api_key_create
from billing import registry
from billing.models import CheckoutFulfilment, CheckoutSession, Plan, StripeEvent, Subscription
from billing.selectors import plan_for_workspace_get
from billing.services import (
    StripeEventProcessingError,
    stripe_event_process,
    stripe_event_reprocess,
    stripe_event_store,
)

from ..factories import UserFactory, member_add, team_workspace

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
    workspace = UserFactory().personal_workspace
    row = deliver(se.event("checkout.session.completed", se.checkout_session(workspace=workspace)))

    assert row.status == StripeEvent.Status.PROCESSED
    sub = Subscription.objects.get(workspace=workspace)
    assert (sub.plan.code, sub.status, sub.stripe_subscription_id) == ("business", "active", "sub_test_1")
    assert sub.checkout_reference == "cs_test_session_1"
    assert sub.current_period_end > sub.activated_at
    assert plan_for_workspace_get(workspace=workspace).code == "business"
    assert ApiKey.objects.filter(workspace=workspace).count() == 1
    assert len(mail.outbox) == 1
    body = mail.outbox[0].body
    assert "Business plan is active" in body
    assert "/dashboard/keys/reveal/" in body
    assert "sk_agentai_" not in body  # a link, never the key
    assert CheckoutFulfilment.objects.get().status == CheckoutFulfilment.Status.FULFILLED


def test_duplicate_delivery_does_nothing(deliver):
    workspace = UserFactory().personal_workspace
    evt = se.event("checkout.session.completed", se.checkout_session(workspace=workspace))
    deliver(evt)
    row, created = stripe_event_store(event=evt)
    assert created is False
    deliver(evt)
    assert Subscription.objects.count() == 1
    assert ApiKey.objects.filter(workspace=workspace).count() == 1
    assert len(mail.outbox) == 1
    assert StripeEvent.objects.get().attempts == 1


def test_completed_and_async_succeeded_fulfil_once(deliver):
    workspace = UserFactory().personal_workspace
    session = se.checkout_session(workspace=workspace)
    deliver(se.event("checkout.session.completed", session))
    deliver(se.event("checkout.session.async_payment_succeeded", session))
    assert Subscription.objects.count() == 1
    assert ApiKey.objects.filter(workspace=workspace).count() == 1
    assert len(mail.outbox) == 1


def test_delayed_payment_waits_for_async_success(deliver):
    workspace = UserFactory().personal_workspace
    pending = deliver(
        se.event(
            "checkout.session.completed", se.checkout_session(workspace=workspace, payment_status="unpaid")
        )
    )
    assert pending.status == StripeEvent.Status.IGNORED
    assert not Subscription.objects.exists()
    deliver(se.event("checkout.session.async_payment_succeeded", se.checkout_session(workspace=workspace)))
    assert Subscription.objects.get(workspace=workspace).status == "active"


def test_delayed_payment_failure_fulfils_nothing(deliver, simulated_settings):
    workspace = UserFactory().personal_workspace
    CheckoutSession.objects.create(
        workspace=workspace,
        kind="plan",
        mode="subscription",
        line_item={},
        success_url="http://localhost/",
        cancel_url="http://localhost/",
        checkout_reference="cs_test_session_1",
    )
    deliver(
        se.event(
            "checkout.session.completed", se.checkout_session(workspace=workspace, payment_status="unpaid")
        )
    )
    deliver(
        se.event(
            "checkout.session.async_payment_failed",
            se.checkout_session(workspace=workspace, payment_status="unpaid"),
        )
    )
    assert not Subscription.objects.exists()
    assert CheckoutFulfilment.objects.get().status == CheckoutFulfilment.Status.FAILED
    assert CheckoutSession.objects.get().status == CheckoutSession.Status.PAYMENT_FAILED
    assert plan_for_workspace_get(workspace=workspace).code == "free"


def test_workspace_with_a_key_gets_no_new_key(deliver):
    user = UserFactory()
    workspace = user.personal_workspace
    api_key_create(workspace=workspace, created_by=user, name="mine")
    deliver(se.event("checkout.session.completed", se.checkout_session(workspace=workspace)))
    assert ApiKey.objects.filter(workspace=workspace).count() == 1
    assert "/dashboard/keys/reveal/" not in mail.outbox[0].body


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_every_ordering_of_created_completed_updated_deleted_ends_canceled(order, deliver):
    workspace = UserFactory().personal_workspace
    t0 = int(time.time()) - 100
    events = [
        se.event(
            "customer.subscription.created",
            se.subscription(workspace=workspace, status="incomplete"),
            created=t0,
        ),
        se.event("checkout.session.completed", se.checkout_session(workspace=workspace), created=t0 + 1),
        se.event(
            "customer.subscription.updated",
            se.subscription(workspace=workspace, status="active", cancel_at_period_end=True),
            created=t0 + 2,
        ),
        se.event(
            "customer.subscription.deleted",
            se.subscription(workspace=workspace, status="canceled"),
            created=t0 + 3,
        ),
    ]
    for index in order:
        deliver(events[index])
    sub = Subscription.objects.get()
    assert sub.status == Subscription.Status.CANCELED
    assert sub.ended_at is not None
    assert plan_for_workspace_get(workspace=workspace).code == "free"
    assert ApiKey.objects.filter(workspace=workspace).count() <= 1


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_every_ordering_of_created_completed_updated_ends_active(order, deliver):
    workspace = UserFactory().personal_workspace
    t0 = int(time.time()) - 100
    events = [
        se.event(
            "customer.subscription.created",
            se.subscription(workspace=workspace, status="incomplete"),
            created=t0,
        ),
        se.event("checkout.session.completed", se.checkout_session(workspace=workspace), created=t0 + 1),
        se.event(
            "customer.subscription.updated",
            se.subscription(workspace=workspace, status="active"),
            created=t0 + 1,
        ),
    ]
    for index in order:
        deliver(events[index])
    sub = Subscription.objects.get()
    assert (sub.status, sub.plan.code) == ("active", "business")
    assert sub.activated_at is not None
    assert ApiKey.objects.filter(workspace=workspace).count() == 1
    assert len(mail.outbox) == 1


def test_cancel_at_period_end_returns_to_free_at_period_end(deliver):
    workspace = UserFactory().personal_workspace
    deliver(se.event("checkout.session.completed", se.checkout_session(workspace=workspace)))
    period_end = int(time.time()) + 3600
    deliver(
        se.event(
            "customer.subscription.updated",
            se.subscription(
                workspace=workspace, status="active", cancel_at_period_end=True, period_end=period_end
            ),
        )
    )
    end = datetime.fromtimestamp(period_end, tz=UTC)
    sub = Subscription.objects.get()
    assert (sub.cancel_at_period_end, sub.current_period_end) == (True, end)
    assert plan_for_workspace_get(workspace=workspace, now=end - timedelta(seconds=1)).code == "business"
    assert plan_for_workspace_get(workspace=workspace, now=end).code == "free"
    deliver(
        se.event(
            "customer.subscription.deleted",
            se.subscription(workspace=workspace, status="canceled"),
            created=period_end,
        )
    )
    assert plan_for_workspace_get(workspace=workspace).code == "free"


def test_plan_change_from_the_portal_follows_the_price(deliver):
    workspace = UserFactory().personal_workspace
    Plan.objects.filter(code="scale").update(stripe_price_id="price_scale")
    deliver(se.event("checkout.session.completed", se.checkout_session(workspace=workspace)))
    deliver(
        se.event(
            "customer.subscription.updated", se.subscription(workspace=workspace, price_id="price_scale")
        )
    )
    assert plan_for_workspace_get(workspace=workspace).code == "scale"


def test_failed_renewal_is_past_due_then_paid_invoice_restores(deliver):
    workspace = UserFactory().personal_workspace
    now = int(time.time())
    deliver(
        se.event("checkout.session.completed", se.checkout_session(workspace=workspace), created=now - 10)
    )
    deliver(
        se.event("invoice.payment_failed", se.invoice(period_end=now + 86400, paid=False), created=now - 5)
    )
    sub = Subscription.objects.get()
    assert sub.status == Subscription.Status.PAST_DUE
    assert plan_for_workspace_get(workspace=workspace).code == "business"  # kept while Stripe retries
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
    workspace = UserFactory().personal_workspace
    evt = se.event(
        "customer.subscription.updated",
        se.subscription(workspace=workspace, subscription_id="sub_org", metadata={}),
    )
    row = deliver(evt)
    assert seen == [evt["id"]]
    assert row.status == StripeEvent.Status.PROCESSED
    assert not Subscription.objects.exists()


def test_unknown_event_type_is_stored_and_ignored(deliver):
    row = deliver(se.event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert row.status == StripeEvent.Status.IGNORED


def test_failure_is_recorded_rolled_back_and_reprocessable(django_capture_on_commit_callbacks):
    workspace = UserFactory().personal_workspace
    evt = se.event("checkout.session.completed", se.checkout_session(workspace=workspace, plan_code="gold"))
    row, _ = stripe_event_store(event=evt)
    with pytest.raises(StripeEventProcessingError):
        stripe_event_process(event=row)
    row.refresh_from_db()
    assert (row.status, row.attempts) == (StripeEvent.Status.FAILED, 1)
    assert "missing workspace, plan or subscription" in row.error
    assert not CheckoutFulfilment.objects.exists()  # rolled back with the handler

    Plan.objects.create(code="gold", name="Gold", price_minor=100)
    with django_capture_on_commit_callbacks(execute=True):
        row = stripe_event_reprocess(event=row)
    assert (row.status, row.attempts, row.error) == (StripeEvent.Status.PROCESSED, 2, "")
    assert Subscription.objects.get(workspace=workspace).plan.code == "gold"


# --- The workspace is the customer ------------------------------------------------------------


def test_a_team_checkout_makes_the_key_for_the_member_who_paid_and_tells_the_billing_contacts(deliver):
    """The plan is the workspace's; the first key is created in the name of the member who opened
    the checkout, and only they get its one-time link; the other billing contacts get the news."""
    owner = UserFactory()
    workspace = team_workspace(owner=owner, name="Acme")
    payer = member_add(workspace, role="billing")
    member_add(workspace, role="developer")
    deliver(
        se.event("checkout.session.completed", se.checkout_session(workspace=workspace, created_by=payer))
    )

    assert Subscription.objects.get().workspace_id == workspace.pk
    assert plan_for_workspace_get(workspace=workspace).code == "business"
    assert plan_for_workspace_get(workspace=payer.personal_workspace).code == "free"
    key = ApiKey.objects.get(workspace=workspace)
    assert key.created_by_id == payer.pk
    by_recipient = {tuple(message.to): message.body for message in mail.outbox}
    assert set(by_recipient) == {(payer.email,), (owner.email,)}
    assert "/dashboard/keys/reveal/" in by_recipient[(payer.email,)]
    assert "/dashboard/keys/reveal/" not in by_recipient[(owner.email,)]
    assert "Acme" in by_recipient[(owner.email,)]


def test_a_webhook_naming_a_legacy_user_id_lands_on_that_users_personal_workspace(deliver):
    """Checkouts and subscriptions opened before workspaces carry ``user_id`` in their Stripe
    metadata; it means that user's personal workspace (whose id need not be the user's)."""
    user = UserFactory()
    workspace = user.personal_workspace
    assert workspace.pk != user.pk  # the test database keeps the two id sequences apart
    legacy = {"kind": "plan", "user_id": str(user.pk), "plan_code": "business"}
    deliver(se.event("customer.subscription.created", se.subscription(workspace=workspace, metadata=legacy)))
    row = deliver(
        se.event("checkout.session.completed", se.checkout_session(workspace=workspace, metadata=legacy))
    )

    assert row.status == StripeEvent.Status.PROCESSED
    sub = Subscription.objects.get()
    assert (sub.workspace_id, sub.status) == (workspace.pk, Subscription.Status.ACTIVE)
    assert plan_for_workspace_get(workspace=workspace).code == "business"
    assert ApiKey.objects.get(workspace=workspace).created_by_id == user.pk


def test_a_subscription_event_for_a_workspace_without_a_checkout_of_ours_is_rejected(deliver):
    """Metadata is Stripe's echo of ours: a workspace id nobody opened a plan checkout for is
    not believed (recorded as failed, never retried into a plan)."""
    victim = UserFactory().personal_workspace
    row = deliver(se.event("customer.subscription.created", se.subscription(workspace=victim)))
    assert row.status == StripeEvent.Status.FAILED
    assert "no plan checkout of ours" in row.error
    assert not Subscription.objects.exists()


def test_subscription_changes_and_payments_are_in_the_workspace_audit_log(deliver):
    workspace = UserFactory().personal_workspace
    now = int(time.time())
    deliver(
        se.event("checkout.session.completed", se.checkout_session(workspace=workspace), created=now - 10)
    )
    deliver(
        se.event(
            "customer.subscription.updated", se.subscription(workspace=workspace, cancel_at_period_end=True)
        )
    )
    deliver(se.event("invoice.paid", se.invoice(period_end=now + 40 * 86400), created=now))
    events = [
        (action, actor)
        for action, actor in AuditEvent.objects.filter(workspace=workspace)
        .order_by("id")
        .values_list("action", "actor")
        if action.startswith(("subscription.", "payment."))
    ]
    assert events == [
        ("subscription.activated", None),
        ("payment.succeeded", None),
        ("subscription.updated", None),
        ("payment.invoice_paid", None),
    ]
