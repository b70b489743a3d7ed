"""Auto top-up end to end: real consumption drops the balance, the task charges the saved card
(Stripe stubbed at the HTTP boundary, or billing's simulated Stripe offline) and the pack is
fulfilled through the same path as a checkout."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest
import responses
import time_machine
from django.core import mail
from django.core.cache import cache
from django.db import connection

from accounts.models import AuditEvent
from billing.models import PaymentTransaction
from core.exceptions import ApiError
from credits.models import AutoTopUp, AutoTopUpAttempt, CreditAccount, CreditPurchase
from credits.selectors import credit_history_list
from credits.services import auto_top_up_run, auto_top_up_update, credit_consume
from credits.services.adjustments import credit_revoke
from credits.services.auto_top_up import _trigger_key
from credits.tasks import credit_auto_top_up_task
from credits.tests.factories import UserFactory, seed_catalogue

from ..auto_top_up_helpers import (
    RECEIPT_URL,
    STRIPE,
    TOKENS_ENDPOINT,
    WEBHOOK_SECRET,
    card_declined_body,
    card_purchase,
    deliver,
    payment_intent_succeeded,
    saved_card_stub,
    stripe_event,
)


@pytest.fixture
def stripe_live(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_auto_top_up"
    settings.STRIPE_API_BASE = ""
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.SIMULATED_CHECKOUT_ENABLED = False
    return settings


@pytest.fixture
def stripe_simulated(settings):
    settings.DEBUG = True
    settings.STRIPE_SECRET_KEY = ""
    settings.SIMULATED_CHECKOUT_ENABLED = True
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    return settings


def _spend(workspace, credits: int, key: str):
    """Real consumption of ``credits`` (2 per 1 000 tokens)."""
    return credit_consume(
        workspace=workspace, endpoint=TOKENS_ENDPOINT, units=credits * 500, idempotency_key=key
    )


def _enable(workspace, user, *, threshold=100, max_per_month=2):
    return auto_top_up_update(
        workspace=workspace,
        actor=user,
        is_enabled=True,
        pack_code="pack_500",
        threshold_credits=threshold,
        max_per_month=max_per_month,
    )


def _balance(workspace) -> int:
    return CreditAccount.objects.get(workspace=workspace).balance


def _charges(http) -> list:
    return [
        call
        for call in http.calls
        if call.request.method == "POST" and call.request.url.endswith("/payment_intents")
    ]


@pytest.mark.django_db
def test_a_debit_below_the_threshold_buys_the_pack_once_even_when_the_task_runs_twice(
    catalogue, user, workspace, stripe_live, django_capture_on_commit_callbacks
):
    card_purchase(workspace)
    _enable(workspace, user)
    month = datetime.now(UTC).strftime("%Y-%m")
    with responses.RequestsMock() as http:
        saved_card_stub(http)
        http.post(f"{STRIPE}/payment_intents", json=payment_intent_succeeded(pi_id="pi_test_auto_1"))
        with django_capture_on_commit_callbacks(execute=True):
            _spend(workspace, 410, "big-call")  # 500 -> 90, below 100: the task runs after commit
        assert auto_top_up_run(workspace_id=workspace.pk) == "not_needed"
        assert credit_auto_top_up_task.apply(args=[workspace.pk]).get() == "not_needed"
        charges = _charges(http)

    assert _balance(workspace) == 590
    assert len(charges) == 1
    sent = parse_qs(charges[0].request.body)
    assert sent["off_session"] == ["true"] and sent["confirm"] == ["true"]
    assert (sent["customer"], sent["payment_method"]) == (["cus_test_saved"], ["pm_test_saved"])
    assert (sent["amount"], sent["currency"]) == (["7900"], ["eur"])
    assert charges[0].request.headers["Idempotency-Key"] == f"auto-top-up:{workspace.pk}:{month}:1"
    purchase = CreditPurchase.objects.get(stripe_payment_intent_id="pi_test_auto_1")
    assert (purchase.credits, purchase.amount_minor, purchase.workspace_id) == (500, 7900, workspace.pk)
    payment = PaymentTransaction.objects.get(reference=purchase.checkout_reference)
    assert (payment.status, payment.kind, payment.receipt_url) == ("paid", "credit_pack", RECEIPT_URL)
    assert AuditEvent.objects.filter(workspace=workspace, action="payment.succeeded").count() == 2
    assert AutoTopUpAttempt.objects.get().status == "succeeded"
    newest = credit_history_list(workspace=workspace)[0]
    assert (newest.entry.amount, newest.receipt.url) == (500, RECEIPT_URL)


@pytest.mark.django_db
def test_an_operator_taking_credits_back_never_charges_the_card(
    catalogue, user, workspace, stripe_live, django_capture_on_commit_callbacks
):
    card_purchase(workspace)
    _enable(workspace, user)
    operator = UserFactory(is_staff=True)
    with responses.RequestsMock() as http, django_capture_on_commit_callbacks(execute=True):
        credit_revoke(workspace=workspace, amount=450, admin_user=operator, reason="goodwill reversed")
        assert _charges(http) == []  # no Stripe call at all (the mock refuses any)

    assert _balance(workspace) == 50
    assert not AutoTopUpAttempt.objects.exists()


@pytest.mark.django_db
def test_the_monthly_maximum_holds_until_the_next_month(
    catalogue, user, workspace, stripe_live, django_capture_on_commit_callbacks
):
    card_purchase(workspace)
    _enable(workspace, user, max_per_month=1)
    march = time_machine.travel(datetime(2031, 3, 30, 12, tzinfo=UTC), tick=False)
    with march, responses.RequestsMock() as http:
        saved_card_stub(http)
        http.post(f"{STRIPE}/payment_intents", json=payment_intent_succeeded(pi_id="pi_test_march"))
        with django_capture_on_commit_callbacks(execute=True):
            _spend(workspace, 410, "march-1")  # 90 -> top-up -> 590
        cache.clear()  # past the trigger's once-a-minute throttle
        with django_capture_on_commit_callbacks(execute=True):
            _spend(workspace, 500, "march-2")  # 590 -> 90: the month's one top-up is used
        assert auto_top_up_run(workspace_id=workspace.pk) == "monthly_limit"
        assert len(_charges(http)) == 1
    assert _balance(workspace) == 90

    april = time_machine.travel(datetime(2031, 4, 1, 0, 5, tzinfo=UTC), tick=False)
    with april, responses.RequestsMock() as http:
        http.post(f"{STRIPE}/payment_intents", json=payment_intent_succeeded(pi_id="pi_test_april"))
        assert auto_top_up_run(workspace_id=workspace.pk) == "succeeded"
        key = _charges(http)[0].request.headers["Idempotency-Key"]
    assert key == f"auto-top-up:{workspace.pk}:2031-04:1"
    assert _balance(workspace) == 590


@pytest.mark.django_db
def test_a_declined_card_turns_auto_top_up_off_and_emails_the_billing_contacts(
    catalogue, user, workspace, member, stripe_live, django_capture_on_commit_callbacks
):
    billing_member = member("billing")
    member("developer")
    card_purchase(workspace)
    _enable(workspace, user)
    with responses.RequestsMock() as http:
        saved_card_stub(http)
        http.post(f"{STRIPE}/payment_intents", status=402, json=card_declined_body("pi_test_declined"))
        with django_capture_on_commit_callbacks(execute=True):
            _spend(workspace, 410, "declined")
        cache.clear()
        with django_capture_on_commit_callbacks(execute=True):
            _spend(workspace, 10, "after-off")  # off now: nothing is tried again
        assert len(_charges(http)) == 1

    assert _balance(workspace) == 80
    row = AutoTopUp.objects.get(workspace=workspace)
    assert not row.is_enabled and "declined" in row.disabled_reason and row.last_failure_at is not None
    assert CreditAccount.objects.get(workspace=workspace).auto_top_up_below is None
    payment = PaymentTransaction.objects.get(gateway_payment_id="pi_test_declined")
    assert payment.status == "failed"
    assert AuditEvent.objects.filter(workspace=workspace, action="payment.failed").count() == 1
    assert AuditEvent.objects.filter(workspace=workspace, action="credits.auto_top_up_disabled").exists()
    assert len(mail.outbox) == 1
    assert sorted(mail.outbox[0].to) == sorted([user.email, billing_member.email])
    assert "turned off" in mail.outbox[0].subject and "declined" in mail.outbox[0].body
    assert AutoTopUpAttempt.objects.get().error_code == "card_declined"


@pytest.mark.django_db
def test_turning_it_on_needs_a_pack_bought_by_card(catalogue, user, workspace, stripe_live):
    with pytest.raises(ApiError) as refused:
        _enable(workspace, user)

    assert refused.value.param == "enabled"
    assert not AutoTopUp.objects.filter(workspace=workspace, is_enabled=True).exists()


@pytest.mark.django_db
def test_the_simulated_gateway_plays_the_card_offline_and_can_decline(
    catalogue, user, workspace, stripe_simulated, django_capture_on_commit_callbacks
):
    card_purchase(workspace)
    _enable(workspace, user)
    with responses.RequestsMock():  # no request leaves the machine
        with django_capture_on_commit_callbacks(execute=True):
            _spend(workspace, 410, "sim-1")
        assert _balance(workspace) == 590
        payment = PaymentTransaction.objects.get(reference__startswith="ots_")
        assert payment.status == "paid" and payment.gateway_payment_id.startswith("pi_sim_")
        assert payment.checkout.is_simulated

        # Stripe's declining test card, set as the saved card, makes the simulation decline.
        AutoTopUp.objects.filter(workspace=workspace).update(
            stripe_payment_method_id="pm_card_chargeDeclined"
        )
        cache.clear()
        with django_capture_on_commit_callbacks(execute=True):
            _spend(workspace, 500, "sim-2")

    assert _balance(workspace) == 90
    row = AutoTopUp.objects.get(workspace=workspace)
    assert not row.is_enabled and "declined" in row.disabled_reason
    assert len(mail.outbox) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_buy_once(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_auto_top_up"
    settings.STRIPE_API_BASE = ""
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.SIMULATED_CHECKOUT_ENABLED = False
    seed_catalogue()
    owner = UserFactory()
    workspace = owner.personal_workspace
    card_purchase(workspace)
    _enable(workspace, owner)
    cache.add(_trigger_key(workspace.pk), 1, timeout=60)  # the debit queues nothing: the threads run it
    _spend(workspace, 410, "race")
    results = []
    barrier = threading.Barrier(6)

    def worker():
        try:
            barrier.wait()
            results.append(auto_top_up_run(workspace_id=workspace.pk))
        finally:
            connection.close()

    with responses.RequestsMock() as http:
        saved_card_stub(http)
        http.post(f"{STRIPE}/payment_intents", json=payment_intent_succeeded(pi_id="pi_test_race"))
        threads = [threading.Thread(target=worker) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        charges = len(_charges(http))

    assert results.count("succeeded") == 1, results
    assert set(results) <= {"succeeded", "in_progress", "not_needed"}
    assert charges == 1
    assert _balance(workspace) == 590
    assert CreditPurchase.objects.filter(workspace=workspace).count() == 2


@pytest.mark.django_db
def test_a_payment_still_processing_blocks_new_ones_until_stripe_says_it_failed(
    catalogue, user, workspace, stripe_live, django_capture_on_commit_callbacks
):
    card_purchase(workspace)
    _enable(workspace, user)
    processing = {
        **payment_intent_succeeded(pi_id="pi_test_slow"),
        "status": "processing",
        "amount_received": 0,
    }
    with responses.RequestsMock() as http:
        saved_card_stub(http)
        http.post(f"{STRIPE}/payment_intents", json=processing)
        with django_capture_on_commit_callbacks(execute=True):
            _spend(workspace, 410, "slow")
        assert auto_top_up_run(workspace_id=workspace.pk) == "in_progress"
        assert len(_charges(http)) == 1
    payment = PaymentTransaction.objects.get(reference__startswith="ots_")
    failed = {**processing, "status": "requires_payment_method", "metadata": dict(payment.checkout.metadata)}

    assert (
        deliver(stripe_event("evt_slow_failed", "payment_intent.payment_failed", failed)).status_code == 200
    )
    assert auto_top_up_run(workspace_id=workspace.pk) == "failed"

    assert PaymentTransaction.objects.get(pk=payment.pk).status == "failed"
    assert not AutoTopUp.objects.get(workspace=workspace).is_enabled
    assert _balance(workspace) == 90
