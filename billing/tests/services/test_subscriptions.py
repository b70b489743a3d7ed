"""One live subscription per customer: a second paid checkout replaces the first, which is
canceled at Stripe (prorated); the database refuses two live rows whatever the code does."""

from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.db import IntegrityError, transaction

import billing.tests.stripe_events as se
from billing.gateways.stripe import subscriptions_replaced_cancel_pending
from billing.models import CheckoutSession, Subscription
from billing.selectors import plan_for_workspace_get, subscription_status_get
from billing.services import (
    chargily_event_process,
    chargily_event_store,
    plan_chargily_checkout_start,
    plan_checkout_start,
    stripe_event_process,
    stripe_event_store,
)
from billing.subscriptions import subscription_retire

from .. import chargily_events as ce
from ..factories import SubscriptionFactory, UserFactory

pytestmark = pytest.mark.django_db

OK = "http://testserver/billing/success/?session_id={CHECKOUT_SESSION_ID}"
STRIPE_SESSIONS = "https://api.stripe.com/v1/checkout/sessions"
STRIPE_SUBSCRIPTIONS = "https://api.stripe.com/v1/subscriptions/"


@pytest.fixture
def both_gateways(stripe_settings, chargily_settings):
    """Stripe (every call stubbed with ``responses``) and the offline Chargily checkout."""
    return stripe_settings


@pytest.fixture
def deliver(django_capture_on_commit_callbacks):
    """Store then process a Stripe or Chargily event, running what waits for the commit (the
    Stripe cancel of a replaced subscription, emails, cache invalidation)."""

    def _deliver(evt, *, gateway="stripe"):
        with django_capture_on_commit_callbacks(execute=True):
            if gateway == "chargily":
                row, _ = chargily_event_store(event=evt)
                return chargily_event_process(event=row)
            row, _ = stripe_event_store(event=evt)
            return stripe_event_process(event=row)

    return _deliver


def _stripe_cancel_stub(subscription_id: str) -> None:
    canceled = se.stripe_object("subscription")
    canceled.update(id=subscription_id, status="canceled")
    responses.delete(STRIPE_SUBSCRIPTIONS + subscription_id, json=canceled)


def _cancel_calls() -> dict[str, dict]:
    return {
        urlsplit(call.request.url).path.rsplit("/", 1)[1]: parse_qs(urlsplit(call.request.url).query)
        for call in responses.calls
        if call.request.method == "DELETE"
    }


def _open_stripe_checkout(workspace, plan_code: str) -> str:
    responses.post(
        STRIPE_SESSIONS, json={"id": f"cs_test_{plan_code}", "url": "https://checkout.stripe.com/x"}
    )
    return plan_checkout_start(workspace=workspace, plan_code=plan_code, success_url=OK, cancel_url=OK)[
        "session_id"
    ]


@responses.activate
def test_three_checkouts_opened_on_free_and_all_paid_leave_one_live_subscription(both_gateways, deliver):
    """Two tabs (Discovery and Scale on Stripe) and a Chargily checkout, opened while on Free,
    then all paid: each payment replaces the one before, which is canceled at Stripe."""
    workspace = UserFactory().personal_workspace
    discovery = _open_stripe_checkout(workspace, "discovery")
    scale = _open_stripe_checkout(workspace, "scale")
    chargily_ref = plan_chargily_checkout_start(
        workspace=workspace, plan_code="student", success_url=OK, failure_url=OK
    )["session_id"]
    _stripe_cancel_stub("sub_discovery")
    _stripe_cancel_stub("sub_scale")

    deliver(
        se.event(
            "checkout.session.completed",
            se.checkout_session(
                workspace=workspace,
                session_id=discovery,
                plan_code="discovery",
                subscription_id="sub_discovery",
            ),
        )
    )
    assert plan_for_workspace_get(workspace=workspace).code == "discovery"
    deliver(
        se.event(
            "checkout.session.completed",
            se.checkout_session(
                workspace=workspace, session_id=scale, plan_code="scale", subscription_id="sub_scale"
            ),
        )
    )
    assert plan_for_workspace_get(workspace=workspace).code == "scale"
    deliver(
        ce.checkout_event("checkout.paid", CheckoutSession.objects.get(checkout_reference=chargily_ref)),
        gateway="chargily",
    )

    live = Subscription.objects.filter(workspace=workspace, status__in=Subscription.ENTITLED_STATUSES)
    assert [(s.gateway, s.plan.code) for s in live] == [("chargily", "student")]
    assert plan_for_workspace_get(workspace=workspace).code == "student"
    assert subscription_status_get(workspace=workspace)["gateway"] == "chargily"
    old = {
        s.stripe_subscription_id: s
        for s in Subscription.objects.filter(workspace=workspace, gateway="stripe")
    }
    assert {sub_id: s.status for sub_id, s in old.items()} == {
        "sub_discovery": "canceled",
        "sub_scale": "canceled",
    }
    assert old["sub_discovery"].replaced_by == old["sub_scale"]
    assert old["sub_scale"].replaced_by == live.get()
    assert all(s.stripe_canceled_at is not None for s in old.values())
    # Canceled at Stripe, each once, now and prorated: neither keeps billing.
    cancels = _cancel_calls()
    assert set(cancels) == {"sub_discovery", "sub_scale"}
    assert all(q == {"prorate": ["true"], "invoice_now": ["true"]} for q in cancels.values())


@responses.activate
def test_a_second_stripe_payment_replaces_the_first_even_when_its_events_come_twice(stripe_settings, deliver):
    workspace = UserFactory().personal_workspace
    _stripe_cancel_stub("sub_first")
    first = se.event(
        "checkout.session.completed",
        se.checkout_session(
            workspace=workspace, session_id="cs_1", subscription_id="sub_first", plan_code="discovery"
        ),
    )
    second = se.event(
        "checkout.session.completed",
        se.checkout_session(
            workspace=workspace, session_id="cs_2", subscription_id="sub_second", plan_code="scale"
        ),
    )

    for evt in (first, second, first, second):
        deliver(evt)

    assert list(
        Subscription.objects.filter(workspace=workspace)
        .order_by("pk")
        .values_list("stripe_subscription_id", "status")
    ) == [
        ("sub_first", "canceled"),
        ("sub_second", "active"),
    ]
    assert len(_cancel_calls()) == 1


def test_a_subscription_event_cannot_revive_a_replaced_subscription(
    stripe_settings, deliver, django_capture_on_commit_callbacks
):
    """Stripe's late ``updated`` (still active) for the replaced one must not make two live."""
    workspace = UserFactory().personal_workspace
    old = SubscriptionFactory(workspace=workspace, stripe_subscription_id="sub_sim_old")
    new = SubscriptionFactory(workspace=workspace, stripe_subscription_id="sub_sim_new", status="incomplete")
    with django_capture_on_commit_callbacks(execute=True):
        subscription_retire(row=old, replaced_by=new, now=old.created_at)
    Subscription.objects.filter(pk=new.pk).update(status="active")

    deliver(
        se.event(
            "customer.subscription.updated",
            se.subscription(workspace=workspace, subscription_id="sub_sim_old"),
        )
    )

    assert Subscription.objects.filter(workspace=workspace, status="active").get() == new


def test_an_unpaid_subscription_paid_late_does_not_displace_a_newer_one(stripe_settings, deliver):
    workspace = UserFactory().personal_workspace
    older = SubscriptionFactory(workspace=workspace, stripe_subscription_id="sub_sim_unpaid", status="unpaid")
    newer = SubscriptionFactory(workspace=workspace, stripe_subscription_id="sub_sim_current")

    deliver(se.event("invoice.paid", se.invoice(subscription_id="sub_sim_unpaid", period_end=2_000_000_000)))

    older.refresh_from_db()
    assert (older.status, older.replaced_by) == ("canceled", newer)
    assert Subscription.objects.filter(workspace=workspace, status="active").get() == newer


def test_the_database_refuses_a_second_live_subscription():
    workspace = UserFactory().personal_workspace
    SubscriptionFactory(workspace=workspace)
    SubscriptionFactory(workspace=workspace, status="canceled")
    with pytest.raises(IntegrityError), transaction.atomic():
        SubscriptionFactory(workspace=workspace, status="past_due")


@responses.activate
def test_the_sweeper_cancels_what_the_after_commit_task_did_not(stripe_settings):
    """A replaced subscription whose cancel never reached Stripe (worker died) is canceled by
    beat; one Stripe already ended counts as done."""
    workspace = UserFactory().personal_workspace
    new = SubscriptionFactory(workspace=workspace, status="incomplete")
    lost = SubscriptionFactory(workspace=workspace, stripe_subscription_id="sub_lost", status="canceled")
    gone = SubscriptionFactory(
        workspace=UserFactory().personal_workspace, stripe_subscription_id="sub_gone", status="canceled"
    )
    for row in (lost, gone):
        subscription_retire(row=row, replaced_by=new, now=row.created_at)  # on-commit task not run
    _stripe_cancel_stub("sub_lost")
    responses.delete(
        STRIPE_SUBSCRIPTIONS + "sub_gone",
        status=404,
        json={
            "error": {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "message": "No such subscription",
            }
        },
    )
    ended = se.stripe_object("subscription")
    ended.update(id="sub_gone", status="canceled")
    responses.get(STRIPE_SUBSCRIPTIONS + "sub_gone", json=ended)

    assert subscriptions_replaced_cancel_pending() == 2
    assert subscriptions_replaced_cancel_pending() == 0
    assert not Subscription.objects.filter(
        replaced_at__isnull=False, stripe_canceled_at__isnull=True
    ).exists()
