"""Chargily services: checkout, events (paid / failed / expired), one-period plans,
renewal reminders, and the shared fulfilment with Stripe's handlers."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import responses
import time_machine
from dateutil.relativedelta import relativedelta
from django.core import mail

from accounts.models import ApiKey
from billing import registry
from billing.models import (
    ChargilyEvent,
    CheckoutFulfilment,
    CheckoutSession,
    PaymentTransaction,
    Plan,
    Subscription,
)
from billing.selectors import plan_for_workspace_get, subscription_status_get
from billing.services import (
    ChargilyEventProcessingError,
    chargily_event_process,
    chargily_event_store,
    chargily_periods_expire,
    chargily_renewal_reminders_send,
    checkout_session_start,
    plan_chargily_checkout_start,
)
from core.exceptions import ApiError
from credits.models import LedgerEntry
from credits.selectors import credit_balance_get

from .. import chargily_events as ce
from ..factories import SubscriptionFactory, UserFactory, member_add, team_workspace

pytestmark = pytest.mark.django_db

SUCCESS = "http://testserver/billing/success/?session_id={CHECKOUT_SESSION_ID}"
FAILURE = "http://testserver/billing/cancel/"
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def deliver(django_capture_on_commit_callbacks):
    def _deliver(evt):
        with django_capture_on_commit_callbacks(execute=True):
            row, _ = chargily_event_store(event=evt)
            return chargily_event_process(event=row)

    return _deliver


def _student_checkout(user) -> CheckoutSession:
    """``user`` opens a Student checkout for their personal workspace."""
    result = plan_chargily_checkout_start(
        workspace=user.personal_workspace,
        actor=user,
        plan_code="student",
        success_url=SUCCESS,
        failure_url=FAILURE,
    )
    return CheckoutSession.objects.get(checkout_reference=result["session_id"])


# --- checkout --------------------------------------------------------------------------------


def test_student_plan_is_seeded_with_its_dzd_price():
    assert Plan.objects.get(code="student").price_dzd_minor == 159_000
    assert Plan.objects.get(code="pro").price_dzd_minor is None


def test_simulated_checkout_records_a_pending_dzd_transaction(chargily_settings):
    workspace = UserFactory().personal_workspace
    result = plan_chargily_checkout_start(
        workspace=workspace, plan_code="student", success_url=SUCCESS, failure_url=FAILURE
    )
    assert result["amount"] == 1590 and result["currency"] == "dzd"
    reference = result["session_id"]
    assert reference.startswith("chg_")
    assert result["checkout_url"] == f"http://testserver/payment/chargily/simulated-checkout/{reference}/"
    checkout = CheckoutSession.objects.get(checkout_reference=reference)
    assert (checkout.gateway, checkout.mode, checkout.kind) == ("chargily", "payment", "plan")
    assert checkout.success_url.endswith(f"session_id={reference}")
    tx = PaymentTransaction.objects.get(reference=reference)
    assert (tx.workspace_id, tx.gateway, tx.kind, tx.status) == (workspace.pk, "chargily", "plan", "pending")
    assert (tx.amount_minor, tx.currency) == (159_000, "dzd")


@responses.activate
def test_live_checkout_sends_whole_dinars_urls_and_our_reference(chargily_live_settings):
    responses.post(
        "https://pay.chargily.net/test/api/v2/checkouts",
        json={
            "id": "01hj5mmk0ewa5e8pgzrgsxd8ka",
            "entity": "checkout",
            "amount": 1590,
            "currency": "dzd",
            "status": "pending",
            "checkout_url": "https://pay.chargily.dz/test/checkouts/01hj5mmk0ewa5e8pgzrgsxd8ka/pay",
        },
    )
    workspace = UserFactory().personal_workspace
    result = plan_chargily_checkout_start(
        workspace=workspace, plan_code="student", success_url=SUCCESS, failure_url=FAILURE
    )
    assert result["checkout_url"] == "https://pay.chargily.dz/test/checkouts/01hj5mmk0ewa5e8pgzrgsxd8ka/pay"

    sent = json.loads(responses.calls[0].request.body)
    reference = result["session_id"]
    assert sent["amount"] == 1590 and sent["currency"] == "dzd"
    assert sent["success_url"].endswith(f"session_id={reference}") and sent["failure_url"] == FAILURE
    assert sent["webhook_endpoint"] == "http://testserver/payment/webhook/chargily"
    assert sent["metadata"] == {"reference": reference, "kind": "plan", "workspace_id": str(workspace.pk)}
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {ce.SECRET}"
    checkout = CheckoutSession.objects.get(checkout_reference=reference)
    assert checkout.gateway_checkout_id == "01hj5mmk0ewa5e8pgzrgsxd8ka" and not checkout.is_simulated
    assert (
        PaymentTransaction.objects.get(reference=reference).gateway_payment_id == checkout.gateway_checkout_id
    )


@responses.activate
def test_chargily_refusal_is_a_502_and_the_attempt_is_canceled(chargily_live_settings):
    responses.post(
        "https://pay.chargily.net/test/api/v2/checkouts",
        json={"message": "The amount is invalid."},
        status=422,
    )
    workspace = UserFactory().personal_workspace
    with pytest.raises(ApiError) as exc:
        plan_chargily_checkout_start(
            workspace=workspace, plan_code="student", success_url=SUCCESS, failure_url=FAILURE
        )
    assert exc.value.status_code == 502 and "amount is invalid" in exc.value.message
    assert PaymentTransaction.objects.get(workspace=workspace).status == "canceled"
    assert CheckoutSession.objects.get(workspace=workspace).status == "canceled"


@pytest.mark.parametrize(
    ("code", "status"), [("pro", 400), ("free", 400), ("nope", 400)], ids=["no-dzd-price", "free", "unknown"]
)
def test_plans_that_cannot_be_paid_in_dzd_are_refused(code, status, chargily_settings):
    with pytest.raises(ApiError) as exc:
        plan_chargily_checkout_start(
            workspace=UserFactory().personal_workspace,
            plan_code=code,
            success_url=SUCCESS,
            failure_url=FAILURE,
        )
    assert exc.value.status_code == status
    assert not PaymentTransaction.objects.exists()


def test_redirect_urls_are_checked(chargily_settings):
    with pytest.raises(ApiError) as exc:
        plan_chargily_checkout_start(
            workspace=UserFactory().personal_workspace,
            plan_code="student",
            success_url="https://evil.example/",
            failure_url=FAILURE,
        )
    assert exc.value.param == "successUrl"


def test_a_stripe_subscriber_cannot_also_buy_a_chargily_period(chargily_settings):
    sub = SubscriptionFactory()
    with pytest.raises(ApiError) as exc:
        plan_chargily_checkout_start(
            workspace=sub.workspace, plan_code="student", success_url=SUCCESS, failure_url=FAILURE
        )
    assert exc.value.status_code == 409


def test_without_api_key_outside_debug_chargily_is_unavailable(chargily_settings):
    chargily_settings.DEBUG = False
    with pytest.raises(ApiError) as exc:
        plan_chargily_checkout_start(
            workspace=UserFactory().personal_workspace,
            plan_code="student",
            success_url=SUCCESS,
            failure_url=FAILURE,
        )
    assert exc.value.status_code == 503


def test_item_without_dzd_price_cannot_use_chargily(chargily_settings):
    with pytest.raises(ApiError) as exc:
        checkout_session_start(
            workspace=UserFactory().personal_workspace,
            kind="credit_pack",
            line_item={"price_data": {"currency": "eur", "unit_amount": 900}, "quantity": 1},
            metadata={},
            success_url=SUCCESS,
            cancel_url=FAILURE,
            mode="payment",
            gateway="chargily",
        )
    assert exc.value.param == "gateway"


# --- events ----------------------------------------------------------------------------------


def test_paid_checkout_activates_the_plan_for_one_period(chargily_settings, deliver):
    user = UserFactory()
    workspace = user.personal_workspace
    with time_machine.travel(T0, tick=False):
        checkout = _student_checkout(user)
        row = deliver(ce.checkout_event("checkout.paid", checkout))
        assert row.status == "processed"
        sub = Subscription.objects.get(workspace=workspace)
        assert (sub.gateway, sub.status, sub.plan.code) == ("chargily", "active", "student")
        assert sub.current_period_end == T0 + relativedelta(months=1)
        assert sub.cancel_at_period_end is True
        assert plan_for_workspace_get(workspace=workspace).code == "student"
        assert subscription_status_get(workspace=workspace) == {
            "tier": "student",
            "is_active": True,
            "expires_at": T0 + relativedelta(months=1),
            "gateway": "chargily",
        }
    tx = PaymentTransaction.objects.get(reference=checkout.checkout_reference)
    assert (tx.status, tx.amount_minor, tx.currency, tx.completed_at) == ("paid", 159_000, "dzd", T0)
    assert tx.gateway_payment_id == checkout.gateway_checkout_id
    checkout.refresh_from_db()
    assert checkout.status == "complete"
    assert CheckoutFulfilment.objects.get(checkout_reference=checkout.checkout_reference).status == (
        "fulfilled"
    )
    assert ApiKey.objects.filter(workspace=workspace).count() == 1
    assert len(mail.outbox) == 1 and "Student plan is active" in mail.outbox[0].subject


def test_two_paid_events_for_one_checkout_fulfil_once(chargily_settings, deliver):
    user = UserFactory()
    workspace = user.personal_workspace
    checkout = _student_checkout(user)
    deliver(ce.checkout_event("checkout.paid", checkout))
    second = deliver(ce.checkout_event("checkout.paid", checkout))
    assert second.status == "processed"
    assert Subscription.objects.filter(workspace=workspace).count() == 1
    assert len(mail.outbox) == 1


def test_a_wrong_amount_fails_the_event_and_grants_nothing(chargily_settings, deliver):
    user = UserFactory()
    checkout = _student_checkout(user)
    with pytest.raises(ChargilyEventProcessingError):
        deliver(ce.checkout_event("checkout.paid", checkout, amount=15))
    event = ChargilyEvent.objects.get()
    assert event.status == "failed" and "expected 159000" in event.error
    assert not Subscription.objects.exists()
    assert PaymentTransaction.objects.get().status == "pending"


@pytest.mark.parametrize(
    ("event_type", "tx_status", "checkout_status"),
    [("checkout.failed", "failed", "payment_failed"), ("checkout.expired", "expired", "canceled")],
)
def test_failed_and_expired_are_recorded(event_type, tx_status, checkout_status, chargily_settings, deliver):
    user = UserFactory()
    workspace = user.personal_workspace
    checkout = _student_checkout(user)
    row = deliver(ce.checkout_event(event_type, checkout))
    assert row.status == "processed"
    tx = PaymentTransaction.objects.get()
    assert tx.status == tx_status and tx.completed_at is not None
    checkout.refresh_from_db()
    assert checkout.status == checkout_status
    assert (
        not Subscription.objects.exists()
        and not CheckoutFulfilment.objects.filter(status="fulfilled").exists()
    )
    assert plan_for_workspace_get(workspace=workspace).code == "free"


def test_event_for_a_checkout_that_is_not_ours_is_ignored(chargily_settings, deliver):
    _student_checkout(UserFactory())
    stranger = CheckoutSession(gateway_checkout_id="01hzzzzzzzzzzzzzzzzzzzzzzz", amount_minor=159_000)
    row = deliver(ce.checkout_event("checkout.paid", stranger, reference="chg_not_ours"))
    assert row.status == "ignored"
    assert not Subscription.objects.exists()
    assert PaymentTransaction.objects.get().status == "pending"


def test_checkout_is_found_by_chargilys_id_when_metadata_is_lost(chargily_settings, deliver):
    user = UserFactory()
    workspace = user.personal_workspace
    checkout = _student_checkout(user)
    row = deliver(ce.checkout_event("checkout.paid", checkout, reference="chg_lost"))
    assert row.status == "processed"
    assert Subscription.objects.get(workspace=workspace).plan.code == "student"


def test_credit_pack_goes_through_the_registered_handler_once(chargily_settings, deliver, monkeypatch):
    calls = []
    monkeypatch.setitem(
        registry._checkout_handlers, "credit_pack", lambda *, session, event_id: calls.append(session)
    )
    workspace = UserFactory().personal_workspace
    result = checkout_session_start(
        workspace=workspace,
        kind="credit_pack",
        line_item={"price_data": {"currency": "dzd", "unit_amount": 250_000}, "quantity": 1},
        metadata={"pack": "pack_500", "credits": "500"},
        success_url=SUCCESS,
        cancel_url=FAILURE,
        mode="payment",
        gateway="chargily",
    )
    checkout = CheckoutSession.objects.get(checkout_reference=result["session_id"])
    deliver(ce.checkout_event("checkout.paid", checkout))
    deliver(ce.checkout_event("checkout.paid", checkout))
    assert len(calls) == 1
    session = calls[0]
    assert session["id"] == result["session_id"]  # the handler's idempotency key is our reference
    assert (session["payment_status"], session["amount_total"], session["currency"]) == (
        "paid",
        250_000,
        "dzd",
    )
    assert session["metadata"]["pack"] == "pack_500"
    assert session["metadata"]["workspace_id"] == session["client_reference_id"] == str(workspace.pk)
    assert "user_id" not in session["metadata"]
    assert PaymentTransaction.objects.get().kind == "credit_pack"


def test_credit_pack_through_the_credits_handler_uses_the_same_key_scheme(chargily_settings, deliver):
    """Integration with the real ``credit_pack`` handler: one ledger entry, ``checkout:<ref>``."""
    workspace = UserFactory().personal_workspace
    result = checkout_session_start(
        workspace=workspace,
        kind="credit_pack",
        line_item={"price_data": {"currency": "dzd", "unit_amount": 250_000}, "quantity": 1},
        metadata={"pack": "pack_500", "credits": "500"},
        success_url=SUCCESS,
        cancel_url=FAILURE,
        mode="payment",
        gateway="chargily",
    )
    checkout = CheckoutSession.objects.get(checkout_reference=result["session_id"])
    deliver(ce.checkout_event("checkout.paid", checkout))
    deliver(ce.checkout_event("checkout.paid", checkout))
    entry = LedgerEntry.objects.get(workspace=workspace)
    assert entry.idempotency_key == f"checkout:{result['session_id']}" and entry.amount == 500
    assert credit_balance_get(workspace=workspace).balance == 500


# --- one-period plans: expiry and renewal reminder -------------------------------------------


def test_a_chargily_plan_ends_at_its_period_end(chargily_settings, deliver):
    user = UserFactory()
    workspace = user.personal_workspace
    with time_machine.travel(T0, tick=False):
        deliver(ce.checkout_event("checkout.paid", _student_checkout(user)))
    end = T0 + relativedelta(months=1)
    with time_machine.travel(end - timedelta(seconds=1), tick=False):
        assert plan_for_workspace_get(workspace=workspace).code == "student"
        assert chargily_periods_expire() == 0
    with time_machine.travel(end + timedelta(minutes=5), tick=False):
        # The plan stops applying at the period end, before the hourly task has run.
        assert plan_for_workspace_get(workspace=workspace).code == "free"
        assert chargily_periods_expire() == 1
        assert chargily_periods_expire() == 0
        sub = Subscription.objects.get(workspace=workspace)
        assert (sub.status, sub.ended_at) == ("canceled", end)
        assert subscription_status_get(workspace=workspace) == {
            "tier": "free",
            "is_active": False,
            "expires_at": None,
            "gateway": None,
        }


def test_renewing_early_starts_the_next_period_when_the_current_one_ends(chargily_settings, deliver):
    user = UserFactory()
    workspace = user.personal_workspace
    with time_machine.travel(T0, tick=False):
        deliver(ce.checkout_event("checkout.paid", _student_checkout(user)))
    with time_machine.travel(T0 + timedelta(days=25), tick=False):
        deliver(ce.checkout_event("checkout.paid", _student_checkout(user)))
    # One live subscription: the renewal extends it by a period instead of adding a second row.
    ends = list(Subscription.objects.filter(workspace=workspace).values_list("current_period_end", flat=True))
    assert ends == [T0 + relativedelta(months=2)]
    with time_machine.travel(T0 + relativedelta(months=1, days=1), tick=False):
        chargily_periods_expire()
        assert plan_for_workspace_get(workspace=workspace).code == "student"
        assert subscription_status_get(workspace=workspace)["expires_at"] == T0 + relativedelta(months=2)
    assert len(mail.outbox) == 1  # the welcome email, not a second one for the renewal


def test_renewal_reminder_is_sent_once_a_few_days_before_the_end(chargily_settings, deliver):
    chargily_settings.CHARGILY_RENEWAL_REMINDER_DAYS = 3
    user = UserFactory()
    with time_machine.travel(T0, tick=False):
        deliver(ce.checkout_event("checkout.paid", _student_checkout(user)))
    mail.outbox.clear()
    end = T0 + relativedelta(months=1)
    with time_machine.travel(end - timedelta(days=10), tick=False):
        assert chargily_renewal_reminders_send() == 0
    with time_machine.travel(end - timedelta(days=2), tick=False):
        assert chargily_renewal_reminders_send() == 1
        assert chargily_renewal_reminders_send() == 0
    with time_machine.travel(end - timedelta(hours=3), tick=False):
        assert chargily_renewal_reminders_send() == 0
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [user.email]
    assert f"ends on {end:%Y-%m-%d}" in mail.outbox[0].subject
    assert "does not renew by itself" in mail.outbox[0].body


def test_a_team_plans_reminder_goes_to_its_owners_and_billing_members(chargily_settings, deliver):
    owner = UserFactory()
    team = team_workspace(owner=owner, name="Acme")
    payer = member_add(team, role="billing")
    member_add(team, role="developer")
    with time_machine.travel(T0, tick=False):
        result = plan_chargily_checkout_start(
            workspace=team, actor=payer, plan_code="student", success_url=SUCCESS, failure_url=FAILURE
        )
        deliver(
            ce.checkout_event(
                "checkout.paid", CheckoutSession.objects.get(checkout_reference=result["session_id"])
            )
        )
    assert Subscription.objects.get().workspace_id == team.pk
    mail.outbox.clear()
    with time_machine.travel(T0 + relativedelta(months=1) - timedelta(days=1), tick=False):
        assert chargily_renewal_reminders_send() == 1
    assert sorted(mail.outbox[0].to) == sorted([owner.email, payer.email])
    assert "Acme" in mail.outbox[0].body


def test_no_reminder_when_the_next_period_is_already_paid(chargily_settings, deliver):
    user = UserFactory()
    with time_machine.travel(T0, tick=False):
        deliver(ce.checkout_event("checkout.paid", _student_checkout(user)))
        deliver(ce.checkout_event("checkout.paid", _student_checkout(user)))
    mail.outbox.clear()
    with time_machine.travel(T0 + relativedelta(months=1) - timedelta(days=1), tick=False):
        assert chargily_renewal_reminders_send() == 0
    assert mail.outbox == []


def test_a_failed_reminder_email_is_retried_by_the_next_run(chargily_settings, deliver, monkeypatch):
    user = UserFactory()
    workspace = user.personal_workspace
    with time_machine.travel(T0, tick=False):
        deliver(ce.checkout_event("checkout.paid", _student_checkout(user)))
    mail.outbox.clear()

    def broken(*args, **kwargs):
        raise ConnectionError("smtp down")

    with time_machine.travel(T0 + relativedelta(months=1) - timedelta(days=1), tick=False):
        monkeypatch.setattr("core.mail.send_mail", broken)
        with pytest.raises(ConnectionError):
            chargily_renewal_reminders_send()
        assert Subscription.objects.get(workspace=workspace).renewal_reminder_sent_at is None
        monkeypatch.undo()
        assert chargily_renewal_reminders_send() == 1
    assert len(mail.outbox) == 1
