"""Chargily Pay V2 webhook payloads for tests (shapes from Chargily's documentation)."""

from __future__ import annotations

import itertools
import json
import time

from billing.gateways import chargily as chargily_client
from billing.models import CheckoutSession

SECRET = "test_sk_chargily_secret_for_tests"
WEBHOOK = "/payment/webhook/chargily"
_ids = itertools.count(1)


def checkout_event(
    event_type: str,
    checkout: CheckoutSession,
    *,
    amount: int | None = None,
    event_id: str | None = None,
    reference: str | None = None,
) -> dict:
    """A ``checkout.*`` event for one of our checkouts, as Chargily sends it."""
    now = int(time.time())
    status = event_type.split(".", 1)[1]
    return {
        "id": event_id or f"01hj5n7cqpaf0mt2d0xx{next(_ids):06d}",
        "entity": "event",
        "livemode": "false",
        "type": event_type,
        "data": {
            "id": checkout.gateway_checkout_id,
            "entity": "checkout",
            "fees": 1250,
            "amount": amount if amount is not None else checkout.amount_minor // 100,
            "locale": "fr",
            "status": status,
            "metadata": {"reference": reference or checkout.checkout_reference},
            "created_at": now - 60,
            "invoice_id": None,
            "updated_at": now,
            "customer_id": "01hj5mmk0b3b0tz6cpnrk6jj5b",
            "description": checkout.description,
            "failure_url": checkout.cancel_url,
            "success_url": checkout.success_url,
            "payment_method": "edahabia" if status == "paid" else None,
            "payment_link_id": None,
            "pass_fees_to_customer": None,
            "shipping_address": None,
            "collect_shipping_address": 0,
            "checkout_url": checkout.checkout_url,
            "currency": "dzd",
        },
        "created_at": now,
        "updated_at": now,
    }


def signed(event: dict, *, secret: str = SECRET) -> tuple[bytes, str]:
    payload = json.dumps(event).encode()
    return payload, chargily_client.signature_compute(payload=payload, secret=secret)


def post(client, payload: bytes, signature: str | None):
    headers = {"HTTP_SIGNATURE": signature} if signature is not None else {}
    return client.post(WEBHOOK, data=payload, content_type="application/json", **headers)
