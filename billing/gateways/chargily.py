"""The Chargily Pay gateway (DZD): the only module that talks HTTP to Chargily Pay (V2), and what
Chargily's events mean for billing.

Chargily shares billing's fulfilment: a paid checkout goes through ``checkout_fulfil`` with the
same registry handlers and the same exactly-once key as Stripe — our own checkout reference
("chg_…"), sent to Chargily in the checkout metadata. Events are verified by an HMAC of the raw
body; storing and processing them is the one webhook pipeline (``billing.services.webhooks``).
Chargily has no recurring billing: a paid plan is one period (``billing.services.subscriptions``).

Why not the official ``chargily-pay`` package: its 2.1.3 release pins ``requests==2.31``
(we pin 2.34.2), sends requests without timeouts and raises bare ``Exception``. The two calls
we need fit in a page on ``requests``, with timeouts, a pooled session and errors mapped to
:class:`ChargilyServiceError` (a message safe to show an operator, never a key).

Amounts: Chargily takes and sends whole dinars (``"amount": 1590``); the rest of Tollgate
keeps DZD in centimes (ISO 4217 minor units). The conversion happens here and nowhere else.
Tests stub the HTTP boundary with ``responses``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache

import requests
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from core.exceptions import ApiError

from ..models import ChargilyEvent, CheckoutSession, Gateway, PaymentTransaction
from ..services.payments import (
    checkout_fulfil,
    checkout_session_expire,
    payment_transaction_record,
    payment_transaction_settle,
)

logger = logging.getLogger("tollgate.chargily")
billing_logger = logging.getLogger("tollgate.billing")

REFERENCE_PREFIX = "chg_"
LOCAL_SECRET_KEY = "chargily_local_simulated_checkout"  # the embedded default (DEBUG only)
HANDLED_EVENT_TYPES = ("checkout.paid", "checkout.failed", "checkout.expired")

API_BASES = {
    "live": "https://pay.chargily.net/api/v2/",
    "test": "https://pay.chargily.net/test/api/v2/",
}
DZD_MINOR_PER_UNIT = 100
MIN_AMOUNT_DZD = 50  # Chargily refuses smaller checkouts


class ChargilyServiceError(Exception):
    """A Chargily call failed. ``message`` never contains a secret."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable


def chargily_is_configured() -> bool:
    """Real Chargily when an API key is set; otherwise the simulated checkout (DEBUG only)."""
    return bool(settings.CHARGILY_API_KEY)


def api_base() -> str:
    if settings.CHARGILY_API_BASE:
        return settings.CHARGILY_API_BASE.rstrip("/") + "/"
    mode = settings.CHARGILY_MODE if settings.CHARGILY_MODE in API_BASES else "test"
    return API_BASES[mode]


def dzd_minor_to_amount(amount_minor: int) -> int:
    """DZD centimes → Chargily's whole-dinar amount (only whole dinars can be charged)."""
    if amount_minor % DZD_MINOR_PER_UNIT:
        raise ValueError("Chargily charges whole dinars: the DZD price must be a multiple of 100 centimes.")
    return amount_minor // DZD_MINOR_PER_UNIT


def amount_to_dzd_minor(amount: int) -> int:
    return int(amount) * DZD_MINOR_PER_UNIT


@lru_cache(maxsize=1)
def _session() -> requests.Session:
    return requests.Session()


def _error_message(response: requests.Response) -> str:
    """Chargily's ``message`` (validation errors), cut short; empty when the body has none."""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("message") or "")[:200] if isinstance(body, dict) else ""


def checkout_create(
    *,
    amount_minor: int,
    success_url: str,
    failure_url: str,
    webhook_endpoint: str,
    description: str,
    metadata: dict[str, str],
    locale: str = "fr",
) -> dict:
    """Create a checkout (``POST /checkouts``) and return Chargily's object as a dict
    (``id``, ``checkout_url``, ``status``, …).

    Never retried automatically: Chargily has no idempotency key, and a second unpaid checkout
    would only confuse the customer; the caller shows the error instead.
    """
    body = {
        "amount": dzd_minor_to_amount(amount_minor),
        "currency": "dzd",
        "success_url": success_url,
        "failure_url": failure_url,
        "webhook_endpoint": webhook_endpoint,
        "description": description[:255],
        "locale": locale,
        "metadata": metadata,
    }
    headers = {
        "Authorization": f"Bearer {settings.CHARGILY_SECRET_KEY}",
        "Accept": "application/json",
    }
    try:
        response = _session().post(
            api_base() + "checkouts", json=body, headers=headers, timeout=settings.CHARGILY_TIMEOUT_SECONDS
        )
    except requests.RequestException as exc:
        logger.warning("chargily checkout create failed: %s", type(exc).__name__)
        raise ChargilyServiceError(
            "Chargily checkout create failed: the payment service is unreachable.", retryable=True
        ) from exc
    if response.status_code >= 400:
        detail = _error_message(response)
        logger.warning("chargily checkout create answered %s", response.status_code)
        raise ChargilyServiceError(
            f"Chargily checkout create failed ({response.status_code}){': ' + detail if detail else ''}",
            status=response.status_code,
            retryable=response.status_code >= 500 or response.status_code == 429,
        )
    try:
        data = response.json()
    except ValueError as exc:
        raise ChargilyServiceError("Chargily checkout create returned a non-JSON body.") from exc
    if not isinstance(data, dict) or not data.get("id") or not data.get("checkout_url"):
        raise ChargilyServiceError("Chargily checkout create returned no checkout id or URL.")
    return data


def signature_compute(*, payload: bytes, secret: str) -> str:
    """Chargily's ``signature`` header: hex HMAC-SHA256 of the raw body with the secret key."""
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def signature_is_valid(*, payload: bytes, signature: str, secret: str) -> bool:
    """Constant-time comparison; a missing signature or secret is never valid."""
    if not signature or not secret:
        return False
    expected = signature_compute(payload=payload, secret=secret)
    return hmac.compare_digest(expected.encode(), signature.strip().encode("utf-8", "replace"))


# --- Checkout and events ---------------------------------------------------------------------


def chargily_simulated_enabled() -> bool:
    """The offline Chargily page exists only in DEBUG and without a Chargily API key."""
    return bool(settings.DEBUG and not chargily_is_configured())


def chargily_secret_get() -> str:
    """The key webhooks are verified (and simulated events signed) with. Outside DEBUG the
    public local default is refused, so a deployment cannot accept forged events."""
    secret = settings.CHARGILY_SECRET_KEY
    if not secret or (secret == LOCAL_SECRET_KEY and not settings.DEBUG):
        raise ApiError("service_unavailable", "Chargily payments are not configured on this server.")
    return secret


def chargily_checkout_open(*, checkout: CheckoutSession) -> dict:
    """Second half of ``checkout_session_start(gateway="chargily")`` for an unsaved checkout.

    Our rows (checkout + pending transaction, keyed by a fresh reference) commit first; the
    Chargily call happens after, outside any transaction.
    """
    if checkout.currency != "dzd" or checkout.amount_minor <= 0:
        raise ApiError("invalid_request", "This item has no price in DZD for Chargily Pay.", param="gateway")
    if checkout.amount_minor % DZD_MINOR_PER_UNIT or (
        checkout.amount_minor < MIN_AMOUNT_DZD * DZD_MINOR_PER_UNIT
    ):
        raise ApiError(
            "invalid_request",
            f"Chargily Pay charges whole dinars, at least {MIN_AMOUNT_DZD} DZD.",
            param="gateway",
        )
    configured = chargily_is_configured()
    if not configured and not chargily_simulated_enabled():
        raise ApiError("service_unavailable", "Chargily payments are not configured on this server.")
    if configured:
        chargily_secret_get()  # refuse before creating anything
    reference = REFERENCE_PREFIX + secrets.token_hex(16)
    checkout.checkout_reference = reference
    # Like Stripe's placeholder, so the outcome page can find the checkout.
    checkout.success_url = checkout.success_url.replace("{CHECKOUT_SESSION_ID}", reference)
    checkout.cancel_url = checkout.cancel_url.replace("{CHECKOUT_SESSION_ID}", reference)
    checkout.metadata = {**checkout.metadata, "reference": reference, "gateway": Gateway.CHARGILY}
    checkout.is_simulated = not configured
    if not configured:
        checkout.gateway_checkout_id = "sim_" + secrets.token_hex(12)
        checkout.checkout_url = settings.SITE_URL + reverse(
            "billing:chargily-simulated-checkout", kwargs={"reference": reference}
        )
    with transaction.atomic():
        checkout.save()
        payment_transaction_record(checkout=checkout)
    if configured:
        try:
            remote = checkout_create(
                amount_minor=checkout.amount_minor,
                success_url=checkout.success_url,
                failure_url=checkout.cancel_url,
                webhook_endpoint=settings.SITE_URL + reverse("billing:chargily-webhook"),
                description=checkout.description or checkout.kind,
                metadata={
                    "reference": reference,
                    "kind": checkout.kind,
                    "workspace_id": str(checkout.workspace_id),
                },
            )
        except ChargilyServiceError as exc:
            now = timezone.now()
            CheckoutSession.objects.filter(pk=checkout.pk).update(
                status=CheckoutSession.Status.CANCELED, updated_at=now
            )
            payment_transaction_settle(
                reference=reference, status=PaymentTransaction.Status.CANCELED, now=now
            )
            raise ApiError("upstream_error", exc.message)
        checkout.gateway_checkout_id = str(remote["id"])[:255]
        checkout.checkout_url = str(remote["checkout_url"])
        checkout.save(update_fields=["gateway_checkout_id", "checkout_url", "updated_at"])
        PaymentTransaction.objects.filter(reference=reference).update(
            gateway_payment_id=checkout.gateway_checkout_id
        )
    return {
        "checkout_url": checkout.checkout_url,
        "session_id": reference,
        "gateway": Gateway.CHARGILY,
        "amount": checkout.amount_minor // DZD_MINOR_PER_UNIT,
        "amount_minor": checkout.amount_minor,
        "currency": "dzd",
    }


def chargily_event_parse(*, payload: bytes, signature: str) -> dict:
    """Verify the ``signature`` header and return the event. Raises ApiError 400."""
    if not signature_is_valid(payload=payload, signature=signature, secret=chargily_secret_get()):
        raise ApiError("invalid_signature", "Invalid or missing webhook signature.")
    try:
        event = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise ApiError("invalid_signature", "Webhook body is not JSON.")
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event["id"]:
        raise ApiError("invalid_signature", "Webhook body is not a Chargily event.")
    if not isinstance(event.get("type"), str) or not isinstance(event.get("data", {}), dict):
        raise ApiError("invalid_signature", "Webhook body is not a Chargily event.")
    return event


def _metadata(obj: dict) -> dict:
    """Chargily echoes metadata as an object (or, from some clients, a list of objects)."""
    metadata = obj.get("metadata") or {}
    if isinstance(metadata, list):
        merged: dict = {}
        for item in metadata:
            if isinstance(item, dict):
                merged.update(item)
        return merged
    return metadata if isinstance(metadata, dict) else {}


def _checkout_for(obj: dict) -> CheckoutSession | None:
    """Our checkout for a Chargily checkout object, by our reference (then Chargily's id)."""
    reference = str(_metadata(obj).get("reference") or "")
    rows = CheckoutSession.objects.filter(gateway=Gateway.CHARGILY)
    checkout = rows.filter(checkout_reference=reference).first() if reference else None
    if checkout is None and obj.get("id"):
        checkout = rows.filter(gateway_checkout_id=str(obj["id"])).first()
    if (
        checkout is not None
        and checkout.gateway_checkout_id
        and str(obj.get("id")) != checkout.gateway_checkout_id
    ):
        raise ValueError(f"checkout {checkout.checkout_reference}: Chargily id does not match")
    return checkout


def _chargily_dispatch(*, event: dict, event_id: str, now: datetime) -> bool:
    event_type = event.get("type", "")
    obj = event.get("data") or {}
    if event_type not in HANDLED_EVENT_TYPES:
        return False
    checkout = _checkout_for(obj)
    if checkout is None:
        billing_logger.warning(
            "chargily event for an unknown checkout", extra={"chargily_event_id": event_id}
        )
        return False
    if event_type == "checkout.paid":
        return chargily_checkout_paid(checkout=checkout, obj=obj, event_id=event_id, now=now)
    if event_type == "checkout.failed":
        CheckoutSession.objects.filter(pk=checkout.pk, status=CheckoutSession.Status.OPEN).update(
            status=CheckoutSession.Status.PAYMENT_FAILED, updated_at=now
        )
        payment_transaction_settle(
            reference=checkout.checkout_reference, status=PaymentTransaction.Status.FAILED, now=now
        )
        return True
    checkout_session_expire(session={"id": checkout.checkout_reference}, now=now)
    return True


def chargily_checkout_paid(*, checkout: CheckoutSession, obj: dict, event_id: str, now: datetime) -> bool:
    """Fulfil a paid Chargily checkout through the same handlers and key as Stripe."""
    amount = obj.get("amount")
    if str(obj.get("currency") or "").lower() != "dzd" or not isinstance(amount, int | str):
        raise ValueError(f"checkout {checkout.checkout_reference}: no DZD amount in the event")
    paid_minor = amount_to_dzd_minor(int(amount))
    if paid_minor != checkout.amount_minor:
        raise ValueError(
            f"checkout {checkout.checkout_reference}: paid {paid_minor} DZD centimes, "
            f"expected {checkout.amount_minor}"
        )
    session = {
        "id": checkout.checkout_reference,
        "object": "chargily.checkout",
        "gateway": Gateway.CHARGILY,
        "status": "complete",
        "payment_status": "paid",
        "amount_total": paid_minor,
        "currency": "dzd",
        "client_reference_id": str(checkout.workspace_id),
        "customer": None,
        "subscription": None,
        "payment_intent": str(obj.get("id") or ""),
        "metadata": checkout.metadata,
    }
    return checkout_fulfil(
        reference=checkout.checkout_reference,
        kind=checkout.kind,
        session=session,
        event_id=event_id,
        now=now,
        amount_minor=paid_minor,
        currency="dzd",
        gateway_payment_id=str(obj.get("id") or ""),
    )


def chargily_simulated_event_build(
    *, checkout: CheckoutSession, outcome: str, now: datetime | None = None
) -> tuple[bytes, str]:
    """A Chargily-shaped ``checkout.<outcome>`` event and its ``signature`` header."""
    if outcome not in ("paid", "failed", "expired"):
        raise ValueError(f"unknown outcome {outcome!r}")
    now = now or timezone.now()
    ts = int(now.timestamp())
    data = {
        "id": checkout.gateway_checkout_id,
        "entity": "checkout",
        "livemode": False,
        "amount": checkout.amount_minor // DZD_MINOR_PER_UNIT,
        "currency": "dzd",
        "fees": 0,
        "status": outcome,
        "locale": "fr",
        "description": checkout.description,
        "metadata": {"reference": checkout.checkout_reference, "kind": checkout.kind},
        "success_url": checkout.success_url,
        "failure_url": checkout.cancel_url,
        "payment_method": "edahabia" if outcome == "paid" else None,
        "checkout_url": checkout.checkout_url,
        "created_at": int(checkout.created_at.timestamp()),
        "updated_at": ts,
    }
    event = {
        "id": "sim_evt_" + secrets.token_hex(12),
        "entity": "event",
        "livemode": "false",
        "type": f"checkout.{outcome}",
        "data": data,
        "created_at": ts,
        "updated_at": ts,
    }
    payload = json.dumps(event).encode()
    return payload, signature_compute(payload=payload, secret=chargily_secret_get())


class ChargilyGateway:
    """Chargily Pay behind ``billing.gateways.base.PaymentGateway``."""

    name = Gateway.CHARGILY
    event_model = ChargilyEvent
    event_id_field = "chargily_event_id"

    def checkout_open(self, *, checkout: CheckoutSession) -> dict:
        return chargily_checkout_open(checkout=checkout)

    def event_verify(self, *, payload: bytes, headers: Mapping[str, str]) -> dict:
        return chargily_event_parse(payload=payload, signature=headers.get("signature", ""))

    def event_row(self, *, event: dict) -> dict:
        livemode = event.get("livemode")
        return {
            "chargily_event_id": event["id"][:255],
            "type": event["type"][:100],
            "livemode": livemode is True or str(livemode).lower() == "true",
        }

    def event_dispatch(self, *, event: dict, event_id: str, now: datetime) -> bool:
        return _chargily_dispatch(event=event, event_id=event_id, now=now)


GATEWAY = ChargilyGateway()
