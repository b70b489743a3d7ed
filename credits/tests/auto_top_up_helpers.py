"""Shared steps of the auto top-up tests: a pack bought by card through the real webhook, and
Stripe's answers (shaped like its API objects) stubbed at the HTTP boundary."""

from __future__ import annotations

import json
import time

from django.test import Client

from billing.gateways.stripe import webhook_signature_header

from .services.test_credit_purchase_fulfil import paid_session

WEBHOOK = "/api/billing/webhook"
WEBHOOK_SECRET = "whsec_credits_auto_top_up_0123456789"
STRIPE = "https://api.stripe.com/v1"
RECEIPT_URL = "https://pay.stripe.com/receipts/payment/CAcaFwoVYWNjdF8xTestReceiptAutoTopUp"
TOKENS_ENDPOINT = "/api/proxy/deepseek/chat"  # 2 credits per 1 000 tokens, rounded up


def stripe_event(event_id: str, event_type: str, obj: dict) -> dict:
    return {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }


def deliver(event: dict):
    payload = json.dumps(event).encode()
    return Client().post(
        WEBHOOK,
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=webhook_signature_header(payload=payload, secret=WEBHOOK_SECRET),
    )


def card_purchase(workspace, *, session_id: str = "cs_test_card") -> str:
    """Buy pack_500 (500 credits) by card through the webhook; returns its PaymentIntent id."""
    session = paid_session(workspace, session_id=session_id)
    assert (
        deliver(stripe_event(f"evt_{session_id}", "checkout.session.completed", session)).status_code == 200
    )
    return session["payment_intent"]


def saved_card_stub(http, payment_intent_id: str = "pi_cs_test_card") -> None:
    http.get(
        f"{STRIPE}/payment_intents/{payment_intent_id}",
        json={
            "id": payment_intent_id,
            "object": "payment_intent",
            "status": "succeeded",
            "customer": "cus_test_saved",
            "payment_method": "pm_test_saved",
            "setup_future_usage": "off_session",
            "livemode": False,
        },
    )


def payment_intent_succeeded(*, pi_id: str, amount: int = 7900, currency: str = "eur") -> dict:
    return {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount,
        "currency": currency,
        "customer": "cus_test_saved",
        "payment_method": "pm_test_saved",
        "status": "succeeded",
        "livemode": False,
        "latest_charge": {
            "id": f"ch_{pi_id}",
            "object": "charge",
            "amount": amount,
            "currency": currency,
            "paid": True,
            "status": "succeeded",
            "payment_intent": pi_id,
            "receipt_url": RECEIPT_URL,
        },
    }


def card_declined_body(pi_id: str = "pi_test_declined") -> dict:
    """Stripe's 402 for an off-session confirmation the bank refused."""
    return {
        "error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "generic_decline",
            "message": "Your card was declined.",
            "payment_intent": {
                "id": pi_id,
                "object": "payment_intent",
                "status": "requires_payment_method",
                "last_payment_error": {"code": "card_declined", "type": "card_error"},
            },
        }
    }
