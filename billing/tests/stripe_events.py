"""Realistic Stripe webhook payloads for tests, built from Stripe's own example objects."""

from __future__ import annotations

import copy
import itertools
import json
import time
from pathlib import Path

from billing.gateways.stripe import webhook_signature_header
from billing.models import CheckoutSession

WEBHOOK_SECRET = "whsec_test_billing_secret"
_OBJECTS = json.loads((Path(__file__).parent / "fixtures" / "stripe_objects.json").read_text())
_ids = itertools.count(1)


def stripe_object(kind: str) -> dict:
    return copy.deepcopy(_OBJECTS[kind])


def event(event_type: str, obj: dict, *, created: int | None = None, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_test_{next(_ids):06d}_{time.time_ns()}",
        "object": "event",
        "api_version": "2026-08-26.dahlia",
        "created": int(created if created is not None else time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": {"object": obj},
    }


def checkout_row(
    *,
    workspace,
    session_id: str,
    kind: str,
    mode: str,
    metadata: dict,
    amount_minor: int,
    currency: str = "eur",
    created_by=None,
) -> CheckoutSession:
    """Our row for a checkout we started for ``workspace``, as ``checkout_session_start`` writes
    it: fulfilment reads it, not the event's metadata."""
    row, _ = CheckoutSession.objects.get_or_create(
        checkout_reference=session_id,
        defaults={
            "workspace": workspace,
            "created_by": created_by,
            "kind": kind,
            "mode": mode,
            "line_item": {"price_data": {"currency": currency, "unit_amount": amount_minor}, "quantity": 1},
            "metadata": metadata,
            "amount_minor": amount_minor,
            "currency": currency,
            "success_url": "https://example.com/ok",
            "cancel_url": "https://example.com/cancel",
        },
    )
    return row


def checkout_session(
    *,
    workspace,
    session_id: str = "cs_test_session_1",
    plan_code: str = "business",
    subscription_id: str = "sub_test_1",
    customer_id: str = "cus_test_1",
    payment_status: str = "paid",
    kind: str = "plan",
    metadata: dict | None = None,
    created_by=None,
) -> dict:
    """A paid ``checkout.session`` of ours for ``workspace``, opened by ``created_by`` (the
    personal owner by default). ``metadata``: what the checkout was opened with (a checkout
    from before workspaces named ``user_id``), echoed by Stripe."""
    if metadata is None:
        metadata = {"kind": kind, "workspace_id": str(workspace.pk), "plan_code": plan_code}
    checkout_row(
        workspace=workspace,
        session_id=session_id,
        kind=kind,
        mode="subscription",
        metadata=metadata,
        amount_minor=9900,
        created_by=created_by or workspace.personal_owner,
    )
    client_reference = metadata.get("workspace_id") or metadata.get("user_id") or str(workspace.pk)
    session = stripe_object("checkout.session")
    session.update(
        id=session_id,
        mode="subscription",
        status="complete",
        payment_status=payment_status,
        amount_total=9900,
        amount_subtotal=9900,
        currency="eur",
        customer=customer_id,
        subscription=subscription_id,
        payment_intent=None,
        client_reference_id=str(client_reference),
        metadata=dict(metadata),
    )
    return session


def subscription(
    *,
    workspace,
    subscription_id: str = "sub_test_1",
    status: str = "active",
    plan_code: str = "business",
    price_id: str = "price_test_unknown",
    period_end: int | None = None,
    cancel_at_period_end: bool = False,
    customer_id: str = "cus_test_1",
    metadata: dict | None = None,
) -> dict:
    sub = stripe_object("subscription")
    period_end = period_end or int(time.time()) + 30 * 86400
    sub.update(
        id=subscription_id,
        status=status,
        customer=customer_id,
        cancel_at_period_end=cancel_at_period_end,
        cancel_at=period_end if cancel_at_period_end else None,
        canceled_at=None,
        ended_at=None,
        metadata=metadata
        if metadata is not None
        else {"kind": "plan", "workspace_id": str(workspace.pk), "plan_code": plan_code},
    )
    sub.pop("current_period_end", None)
    item = sub["items"]["data"][0]
    item["price"]["id"] = price_id
    item["subscription"] = subscription_id
    item["current_period_start"] = period_end - 30 * 86400
    item["current_period_end"] = period_end
    return sub


def invoice(*, subscription_id: str = "sub_test_1", period_end: int, paid: bool = True) -> dict:
    inv = stripe_object("invoice")
    inv.update(status="paid" if paid else "open", customer="cus_test_1")
    inv.pop("subscription", None)
    inv["parent"] = {
        "type": "subscription_details",
        "subscription_details": {"subscription": subscription_id, "metadata": {}},
        "quote_details": None,
    }
    inv["lines"]["data"][0]["period"] = {"start": period_end - 30 * 86400, "end": period_end}
    return inv


def signed(evt: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> tuple[bytes, str]:
    payload = json.dumps(evt).encode()
    return payload, webhook_signature_header(payload=payload, secret=secret, timestamp=timestamp)
