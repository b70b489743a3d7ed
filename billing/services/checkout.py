"""Checkout: open a checkout at a gateway (Stripe, Chargily or the offline simulation) for a plan
or another app's kind, validate the redirect URLs, cancel the offline simulated checkout.

Our rows are written before the gateway is called, and network calls happen outside any
transaction (each gateway's ``checkout_open``, found through ``billing.registry``, so services
never import a gateway); a paid checkout is fulfilled through the webhook pipeline
(``webhooks``) and ``payments.checkout_fulfil``.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.exceptions import ApiError

from .. import registry
from ..catalog import DEFAULT_CURRENCY
from ..models import CheckoutSession, Gateway, PaymentTransaction, Plan
from ..selectors import subscription_get
from .payments import payment_transaction_settle
from .subscriptions import PLAN_CHECKOUT_KIND

# =============================================================================================
# Checkout
# =============================================================================================


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


def checkout_session_start(
    *,
    workspace,
    kind: str,
    line_item: dict,
    metadata: dict,
    success_url: str,
    cancel_url: str,
    mode: str,
    description: str = "",
    gateway: str = Gateway.STRIPE,
    actor=None,
) -> dict:
    """Open a checkout for ``workspace`` (Stripe, or the simulated one offline) and return
    ``{"checkout_url", "session_id"}``. ``kind`` selects the registered handler on payment;
    ``actor`` is the member who opened it (recorded on the row, and its email is the Stripe
    customer email when the workspace has no Stripe customer yet).

    The metadata sent to the gateway (and echoed back) names the workspace: ``workspace_id``.

    The gateway (``billing.gateways``) writes our CheckoutSession row first, so the Stripe
    idempotency key is built from our id; its call happens outside any transaction.

    ``gateway="chargily"`` opens a Chargily Pay checkout instead: ``line_item`` must then carry
    ``price_data`` in ``dzd`` (centimes); the result also has ``amount`` (whole DZD),
    ``amount_minor`` and ``currency``, and ``session_id`` is our reference ("chg_…").
    Either way a pending PaymentTransaction records the attempt.
    """
    if gateway not in Gateway.values or registry.gateway_get(gateway) is None:
        raise ApiError("invalid_request", f"Unknown payment gateway: {gateway}", param="gateway")
    checkout_redirect_url_validate(url=success_url, param="successUrl")
    checkout_redirect_url_validate(url=cancel_url, param="cancelUrl")
    if mode not in ("subscription", "payment"):
        raise ValueError(f"unsupported checkout mode {mode!r}")
    full_metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
    full_metadata.pop("user_id", None)  # the tenant is the workspace; never a user id beside it
    full_metadata.update({"kind": kind, "workspace_id": str(workspace.pk)})
    price_data = line_item.get("price_data") or {}
    checkout = CheckoutSession(
        workspace=workspace,
        created_by=actor if actor is not None and actor.pk else None,
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
    return registry.gateway_get(gateway).checkout_open(checkout=checkout)


def plan_checkout_start(*, workspace, plan_code: str, success_url: str, cancel_url: str, actor=None) -> dict:
    """Checkout (mode subscription) of a paid, active plan for the workspace."""
    plan = Plan.objects.filter(code=str(plan_code or ""), is_active=True).first()
    if plan is None or not plan.is_paid:
        raise ApiError("invalid_request", f"Unknown or unavailable plan: {plan_code}", param="planId")
    current = subscription_get(workspace=workspace)
    if current is not None:
        raise ApiError(
            "conflict",
            f"This workspace already has the {current.plan.name} plan; change plans from the billing portal.",
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
        workspace=workspace,
        actor=actor,
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


def plan_chargily_checkout_start(
    *,
    workspace,
    plan_code: str,
    success_url: str,
    failure_url: str,
    now: datetime | None = None,
    actor=None,
) -> dict:
    """Pay one period of a plan in DZD. Renewing the same Chargily plan early is allowed (the
    new period starts when the current one ends); any other current paid plan is a conflict."""
    now = now or timezone.now()
    plan = Plan.objects.filter(code=str(plan_code or ""), is_active=True).first()
    if plan is None or not plan.is_paid:
        raise ApiError("invalid_request", f"Unknown or unavailable plan: {plan_code}", param="plan_code")
    if not plan.price_dzd_minor:
        raise ApiError("invalid_request", f"The {plan.name} plan has no DZD price.", param="plan_code")
    current = subscription_get(workspace=workspace)
    if current is not None and not (
        current.gateway == Gateway.CHARGILY
        and (current.plan_id == plan.pk or (current.current_period_end or now) <= now)
    ):
        raise ApiError(
            "conflict",
            f"This workspace already has the {current.plan.name} plan until it ends or is canceled.",
            param="plan_code",
        )
    return checkout_session_start(
        workspace=workspace,
        actor=actor,
        kind=PLAN_CHECKOUT_KIND,
        line_item={
            "price_data": {
                "currency": "dzd",
                "unit_amount": plan.price_dzd_minor,
                "product_data": {"name": f"Tollgate {plan.name}"},
            },
            "quantity": 1,
        },
        metadata={"plan_code": plan.code},
        success_url=success_url,
        cancel_url=failure_url,
        mode="payment",
        description=f"Tollgate {plan.name} ({plan.get_interval_display().lower()}, one period)",
        gateway=Gateway.CHARGILY,
    )


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
