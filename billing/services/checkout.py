"""Checkout: open a Checkout Session (Stripe, Chargily or the offline simulation), validate the
redirect URLs, the billing portal, and the payment-transaction rows both gateways write.

Network calls to the gateway happen outside any transaction; fulfilment of a paid session lives
in ``stripe_events`` (and the Chargily module), which import from here.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from urllib.parse import urlsplit

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from core.exceptions import ApiError

from .. import stripe_client
from ..catalog import DEFAULT_CURRENCY
from ..models import CheckoutSession, Gateway, PaymentTransaction, Plan
from ..selectors import subscription_billing_customer_get, subscription_get

PLAN_CHECKOUT_KIND = "plan"


# =============================================================================================
# Checkout
# =============================================================================================


def simulated_checkout_enabled() -> bool:
    """The offline checkout exists only in DEBUG and without Stripe (re-checked at runtime)."""
    return bool(settings.SIMULATED_CHECKOUT_ENABLED and settings.DEBUG and not settings.STRIPE_SECRET_KEY)


def checkout_redirect_url_validate(*, url: str, param: str) -> str:
    """Reject anything but http(s) on a host of CHECKOUT_REDIRECT_HOSTS (no open redirect)."""
    message = f"{param} must be an http(s) URL on an allowed host."
    if not isinstance(url, str) or not url or len(url) > 2000 or "\\" in url or any(c.isspace() for c in url):
        raise ApiError("invalid_request", message, param=param)
    try:
        parts = urlsplit(url)
        hostname = (parts.hostname or "").lower()
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError:
        raise ApiError("invalid_request", message, param=param)
    if parts.scheme not in ("http", "https") or not hostname or parts.username or parts.password:
        raise ApiError("invalid_request", message, param=param)
    for allowed in settings.CHECKOUT_REDIRECT_HOSTS:
        allowed = allowed.lower()
        if hostname == allowed or (allowed.startswith(".") and hostname.endswith(allowed)):
            return url
    raise ApiError("invalid_request", message, param=param)


def _add_interval(at: datetime, interval: str) -> datetime:
    return at + (relativedelta(years=1) if interval == Plan.Interval.YEAR else relativedelta(months=1))


def checkout_session_start(
    *,
    user,
    kind: str,
    line_item: dict,
    metadata: dict,
    success_url: str,
    cancel_url: str,
    mode: str,
    description: str = "",
    gateway: str = Gateway.STRIPE,
) -> dict:
    """Open a checkout for ``user`` (Stripe, or the simulated one offline) and return
    ``{"checkout_url", "session_id"}``. ``kind`` selects the registered handler on payment.

    Our CheckoutSession row is written first so the Stripe idempotency key is built from our
    id; the Stripe call happens outside any transaction.

    ``gateway="chargily"`` opens a Chargily Pay checkout instead: ``line_item`` must then carry
    ``price_data`` in ``dzd`` (centimes); the result also has ``amount`` (whole DZD),
    ``amount_minor`` and ``currency``, and ``session_id`` is our reference ("chg_…").
    Either way a pending PaymentTransaction records the attempt.
    """
    if gateway not in Gateway.values:
        raise ApiError("invalid_request", f"Unknown payment gateway: {gateway}", param="gateway")
    checkout_redirect_url_validate(url=success_url, param="successUrl")
    checkout_redirect_url_validate(url=cancel_url, param="cancelUrl")
    if mode not in ("subscription", "payment"):
        raise ValueError(f"unsupported checkout mode {mode!r}")
    full_metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
    full_metadata.update({"kind": kind, "user_id": str(user.pk)})
    price_data = line_item.get("price_data") or {}
    checkout = CheckoutSession(
        user=user,
        kind=kind,
        mode=mode,
        line_item=line_item,
        metadata=full_metadata,
        amount_minor=int(price_data.get("unit_amount") or 0) * int(line_item.get("quantity") or 1),
        currency=(price_data.get("currency") or DEFAULT_CURRENCY).lower(),
        description=description or (price_data.get("product_data") or {}).get("name", "")[:200],
        success_url=success_url,
        cancel_url=cancel_url,
        gateway=gateway,
    )
    if gateway == Gateway.CHARGILY:
        from ..chargily import chargily_checkout_open

        return chargily_checkout_open(checkout=checkout)
    if stripe_client.stripe_is_configured():
        checkout.save()
        params = {
            "mode": mode,
            "line_items": [line_item],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": str(user.pk),
            "metadata": full_metadata,
        }
        customer_id = subscription_billing_customer_get(user=user)
        if customer_id:
            params["customer"] = customer_id
        else:
            params["customer_email"] = user.email
        if mode == "subscription":
            params["subscription_data"] = {"metadata": full_metadata}
        else:
            params["payment_intent_data"] = {"metadata": full_metadata}
        try:
            session = stripe_client.checkout_session_create(
                params=params, idempotency_key=f"checkout-session:{checkout.pk}"
            )
        except stripe_client.StripeServiceError as exc:
            CheckoutSession.objects.filter(pk=checkout.pk).update(status=CheckoutSession.Status.CANCELED)
            raise ApiError("upstream_error", exc.message)
        checkout.checkout_reference = session["id"]
        checkout.checkout_url = session.get("url") or ""
        checkout.save(update_fields=["checkout_reference", "checkout_url", "updated_at"])
        payment_transaction_record(checkout=checkout)
    elif simulated_checkout_enabled():
        checkout.is_simulated = True
        checkout.checkout_reference = "cs_test_sim_" + secrets.token_hex(24)
        checkout.checkout_url = settings.SITE_URL + reverse(
            "billing:simulated-checkout", kwargs={"session_id": checkout.checkout_reference}
        )
        with transaction.atomic():
            checkout.save()
            payment_transaction_record(checkout=checkout)
    else:
        raise ApiError("service_unavailable", "Payments are not configured on this server.")
    return {"checkout_url": checkout.checkout_url, "session_id": checkout.checkout_reference}


def plan_checkout_start(*, user, plan_code: str, success_url: str, cancel_url: str) -> dict:
    """Checkout (mode subscription) for a paid, active plan."""
    plan = Plan.objects.filter(code=str(plan_code or ""), is_active=True).first()
    if plan is None or not plan.is_paid:
        raise ApiError("invalid_request", f"Unknown or unavailable plan: {plan_code}", param="planId")
    current = subscription_get(user=user)
    if current is not None:
        raise ApiError(
            "conflict",
            f"You already have the {current.plan.name} plan; change plans from the billing portal.",
            param="planId",
        )
    if plan.stripe_price_id:
        line_item = {"price": plan.stripe_price_id, "quantity": 1}
    else:
        line_item = {
            "price_data": {
                "currency": plan.currency,
                "unit_amount": plan.price_minor,
                "recurring": {"interval": plan.interval},
                "product_data": {"name": f"Tollgate {plan.name}"},
            },
            "quantity": 1,
        }
    result = checkout_session_start(
        user=user,
        kind=PLAN_CHECKOUT_KIND,
        line_item=line_item,
        metadata={"plan_code": plan.code},
        success_url=success_url,
        cancel_url=cancel_url,
        mode="subscription",
        description=f"Tollgate {plan.name} ({plan.get_interval_display().lower()})",
    )
    if plan.stripe_price_id:
        CheckoutSession.objects.filter(checkout_reference=result["session_id"]).update(
            amount_minor=plan.price_minor, currency=plan.currency
        )
        PaymentTransaction.objects.filter(
            reference=result["session_id"], status=PaymentTransaction.Status.PENDING
        ).update(amount_minor=plan.price_minor, currency=plan.currency)
    return result


def billing_portal_session_start(*, user, return_url: str) -> str:
    """The URL of the Stripe customer portal for the user's billing account."""
    checkout_redirect_url_validate(url=return_url, param="returnUrl")
    customer_id = subscription_billing_customer_get(user=user)
    if not customer_id:
        raise ApiError("invalid_request", "You have no billing account yet: subscribe to a plan first.")
    if not stripe_client.stripe_is_configured():
        raise ApiError("service_unavailable", "The billing portal needs Stripe, which is not configured.")
    try:
        session = stripe_client.billing_portal_session_create(customer_id=customer_id, return_url=return_url)
    except stripe_client.StripeServiceError as exc:
        raise ApiError("upstream_error", exc.message)
    return session["url"]


def simulated_checkout_cancel(*, checkout: CheckoutSession) -> None:
    now = timezone.now()
    with transaction.atomic():
        if CheckoutSession.objects.filter(pk=checkout.pk, status=CheckoutSession.Status.OPEN).update(
            status=CheckoutSession.Status.CANCELED, updated_at=now
        ):
            payment_transaction_settle(
                reference=checkout.checkout_reference,
                status=PaymentTransaction.Status.CANCELED,
                now=now,
            )


# =============================================================================================
# Payment transactions (both gateways)
# =============================================================================================


def _payment_kind(kind: str) -> str:
    return kind if kind in PaymentTransaction.Kind.values else PaymentTransaction.Kind.OTHER


def payment_transaction_record(*, checkout: CheckoutSession) -> PaymentTransaction:
    """The pending attempt for a checkout that has its reference (idempotent on it)."""
    row, _ = PaymentTransaction.objects.get_or_create(
        reference=checkout.checkout_reference,
        defaults={
            "user_id": checkout.user_id,
            "gateway": checkout.gateway,
            "kind": _payment_kind(checkout.kind),
            "checkout": checkout,
            "gateway_payment_id": checkout.gateway_checkout_id,
            "amount_minor": checkout.amount_minor,
            "currency": checkout.currency,
        },
    )
    return row


def payment_transaction_settle(
    *,
    reference: str,
    status: str,
    now: datetime | None = None,
    amount_minor: int | None = None,
    currency: str = "",
    gateway_payment_id: str = "",
) -> bool:
    """Move an attempt to its outcome with one conditional UPDATE.

    Only a pending attempt can fail, expire or be canceled; ``paid`` wins over any outcome but
    itself (money that arrived is revenue), and a paid row never changes again. A payment for
    a checkout that has no row yet (started before rows were kept) gets one.
    """
    now = now or timezone.now()
    allowed = [PaymentTransaction.Status.PENDING]
    if status == PaymentTransaction.Status.PAID:
        allowed += [
            PaymentTransaction.Status.FAILED,
            PaymentTransaction.Status.EXPIRED,
            PaymentTransaction.Status.CANCELED,
        ]
    changes: dict = {"status": status, "completed_at": now, "updated_at": now}
    if amount_minor is not None and currency:
        changes.update(amount_minor=int(amount_minor), currency=currency.lower())
    if gateway_payment_id:
        changes["gateway_payment_id"] = gateway_payment_id[:255]
    rows = PaymentTransaction.objects.filter(reference=reference)
    if rows.filter(status__in=allowed).update(**changes):
        return True
    if rows.exists():
        return False
    checkout = CheckoutSession.objects.filter(checkout_reference=reference).first()
    if checkout is None:
        return False
    row = payment_transaction_record(checkout=checkout)
    return bool(PaymentTransaction.objects.filter(pk=row.pk, status__in=allowed).update(**changes))


def simulated_checkout_event_build(
    *, checkout: CheckoutSession, now: datetime | None = None
) -> tuple[bytes, str]:
    """A ``checkout.session.completed`` event shaped like Stripe's, and its signature header."""
    import json

    now = now or timezone.now()
    ts = int(now.timestamp())
    session = {
        "id": checkout.checkout_reference,
        "object": "checkout.session",
        "mode": checkout.mode,
        "status": "complete",
        "payment_status": "paid",
        "amount_subtotal": checkout.amount_minor,
        "amount_total": checkout.amount_minor,
        "currency": checkout.currency,
        "client_reference_id": str(checkout.user_id),
        "customer": f"cus_sim_{checkout.user_id}",
        "customer_details": {"email": checkout.user.email},
        "metadata": checkout.metadata,
        "subscription": f"sub_sim_{secrets.token_hex(12)}" if checkout.mode == "subscription" else None,
        "payment_intent": f"pi_sim_{secrets.token_hex(12)}" if checkout.mode == "payment" else None,
        "success_url": checkout.success_url,
        "cancel_url": checkout.cancel_url,
        "created": int(checkout.created_at.timestamp()),
        "livemode": False,
    }
    event = {
        "id": f"evt_sim_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": settings.STRIPE_API_VERSION,
        "created": ts,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "checkout.session.completed",
        "data": {"object": session},
    }
    payload = json.dumps(event).encode()
    header = stripe_client.webhook_signature_header(
        payload=payload, secret=settings.STRIPE_WEBHOOK_SECRET, timestamp=ts
    )
    return payload, header
