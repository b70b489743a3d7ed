"""What a paid checkout is for comes from our own CheckoutSession row, never from the event.

A signed event is proof that a payment happened; which workspace paid, for what plan or pack and
how many credits is what we wrote when the checkout started. So fulfilment:
- finds our row by the session id (no row: not a checkout we started, nothing is granted);
- compares what the event says with the row — metadata, ``client_reference_id``, mode and
  currency — and rejects the event (stored as ``failed`` with the reason) if they disagree;
- hands the kind's handler a session whose identity fields (id, workspace — as
  ``client_reference_id`` and ``metadata.workspace_id`` —, metadata, currency) are the row's,
  and only the payment facts (payment status, payment intent, subscription,
  customer, amount paid) are the gateway's.
"""

from __future__ import annotations

from .models import CheckoutSession, Gateway


class CheckoutEventRejected(Exception):
    """A checkout event that disagrees with our own row: recorded as ``failed``, never retried
    into success (a redelivery of the same event is rejected the same way)."""


# Facts only the gateway knows; everything else a handler reads comes from our row.
_PAYMENT_FACTS = (
    "object",
    "status",
    "payment_status",
    "payment_intent",
    "subscription",
    "customer",
    "customer_details",
    "amount_total",
    "amount_subtotal",
    "created",
    "livemode",
)


def _id(value) -> str:
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def checkout_for_session_get(*, session: dict) -> CheckoutSession | None:
    """Our Stripe checkout for a ``checkout.session`` object, by its id."""
    reference = _id(session.get("id"))
    if not reference:
        return None
    return (
        CheckoutSession.objects.select_related("workspace")
        .filter(checkout_reference=reference, gateway=Gateway.STRIPE)
        .first()
    )


def checkout_session_disagreement(*, checkout: CheckoutSession, session: dict) -> str:
    """Every way the event's session does not describe our checkout ("" when it does).

    Stripe echoes the metadata we sent, so every key the event carries must hold our value.
    """
    metadata = session.get("metadata") or {}
    if not isinstance(metadata, dict):
        return "metadata is not an object"
    ours = checkout.metadata or {}
    reasons = []
    for key in sorted(metadata):
        if key not in ours:
            reasons.append(f"metadata {key[:40]!r} is not in our checkout")
        elif str(metadata[key]) != str(ours[key]):
            reasons.append(
                f"metadata {key!r} is {str(metadata[key])[:80]!r}, our checkout says {ours[key]!r}"
            )
    client_reference = session.get("client_reference_id")
    if client_reference not in (None, "") and str(client_reference) != _client_reference(checkout):
        reasons.append(f"client_reference_id {str(client_reference)[:40]!r} is not our checkout's workspace")
    if session.get("mode") not in (None, "") and session["mode"] != checkout.mode:
        reasons.append(f"mode {str(session['mode'])[:40]!r}, our checkout is {checkout.mode!r}")
    currency = str(session.get("currency") or "").lower()
    if currency and currency != checkout.currency:
        reasons.append(f"currency {currency[:10]!r}, our checkout is {checkout.currency!r}")
    return "; ".join(reasons)


def _client_reference(checkout: CheckoutSession) -> str:
    """What the gateway was sent as ``client_reference_id``: the workspace id, or for a
    checkout opened before workspaces (its metadata names a ``user_id``) that user's id."""
    metadata = checkout.metadata or {}
    if "workspace_id" not in metadata and metadata.get("user_id"):
        return str(metadata["user_id"])
    return str(checkout.workspace_id)


def checkout_session_trusted(*, checkout: CheckoutSession, session: dict) -> dict:
    """The session a handler receives: our row's identity fields, the gateway's payment facts."""
    trusted = {key: session.get(key) for key in _PAYMENT_FACTS if key in session}
    trusted.update(
        id=checkout.checkout_reference,
        gateway=checkout.gateway,
        mode=checkout.mode,
        client_reference_id=str(checkout.workspace_id),
        metadata=dict(checkout.metadata or {}),
        currency=checkout.currency,
    )
    if trusted.get("amount_total") is None:
        trusted["amount_total"] = checkout.amount_minor
    return trusted
