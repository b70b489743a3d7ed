"""Services for the Chargily Pay gateway (DZD): checkout, webhook events, one-period plans.

Chargily shares billing's fulfilment: a paid checkout goes through ``checkout_fulfil`` with the
same registry handlers and the same exactly-once key as Stripe — our own checkout reference
("chg_…"), sent to Chargily in the checkout metadata. Rules kept here:
- webhook events are verified (HMAC of the raw body), stored (unique event id), then processed
  under a row lock on the stored event; a replay answers 200 and does nothing;
- no HTTP call inside a transaction: the Chargily checkout is created after our rows commit;
- Chargily has no recurring billing: a paid plan is one period (``subscription_period_activate``),
  a reminder goes out once a few days before it ends, and an hourly task ends it.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef
from django.urls import reverse
from django.utils import timezone

from core.exceptions import ApiError
from core.locks import lock_objects

from . import chargily_client
from .models import ChargilyEvent, CheckoutSession, Gateway, PaymentTransaction, Plan, Subscription
from .selectors import subscription_get, user_plan_cache_key
from .services import (
    PLAN_CHECKOUT_KIND,
    checkout_fulfil,
    checkout_session_expire,
    checkout_session_start,
    payment_transaction_record,
    payment_transaction_settle,
)

logger = logging.getLogger("tollgate.billing")

REFERENCE_PREFIX = "chg_"
LOCAL_SECRET_KEY = "chargily_local_simulated_checkout"  # the embedded default (DEBUG only)
HANDLED_EVENT_TYPES = ("checkout.paid", "checkout.failed", "checkout.expired")


class ChargilyEventProcessingError(Exception):
    """Processing a stored event failed; the error is recorded on the event row."""


def chargily_simulated_enabled() -> bool:
    """The offline Chargily page exists only in DEBUG and without a Chargily API key."""
    return bool(settings.DEBUG and not chargily_client.chargily_is_configured())


def chargily_secret_get() -> str:
    """The key webhooks are verified (and simulated events signed) with. Outside DEBUG the
    public local default is refused, so a deployment cannot accept forged events."""
    secret = settings.CHARGILY_SECRET_KEY
    if not secret or (secret == LOCAL_SECRET_KEY and not settings.DEBUG):
        raise ApiError("service_unavailable", "Chargily payments are not configured on this server.")
    return secret


# =============================================================================================
# Checkout
# =============================================================================================


def chargily_checkout_open(*, checkout: CheckoutSession) -> dict:
    """Second half of ``checkout_session_start(gateway="chargily")`` for an unsaved checkout.

    Our rows (checkout + pending transaction, keyed by a fresh reference) commit first; the
    Chargily call happens after, outside any transaction.
    """
    if checkout.currency != "dzd" or checkout.amount_minor <= 0:
        raise ApiError("invalid_request", "This item has no price in DZD for Chargily Pay.", param="gateway")
    if checkout.amount_minor % chargily_client.DZD_MINOR_PER_UNIT or (
        checkout.amount_minor < chargily_client.MIN_AMOUNT_DZD * chargily_client.DZD_MINOR_PER_UNIT
    ):
        raise ApiError(
            "invalid_request",
            f"Chargily Pay charges whole dinars, at least {chargily_client.MIN_AMOUNT_DZD} DZD.",
            param="gateway",
        )
    configured = chargily_client.chargily_is_configured()
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
            remote = chargily_client.checkout_create(
                amount_minor=checkout.amount_minor,
                success_url=checkout.success_url,
                failure_url=checkout.cancel_url,
                webhook_endpoint=settings.SITE_URL + reverse("billing:chargily-webhook"),
                description=checkout.description or checkout.kind,
                metadata={
                    "reference": reference,
                    "kind": checkout.kind,
                    "user_id": str(checkout.user_id),
                },
            )
        except chargily_client.ChargilyServiceError as exc:
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
        "amount": checkout.amount_minor // chargily_client.DZD_MINOR_PER_UNIT,
        "amount_minor": checkout.amount_minor,
        "currency": "dzd",
    }


def plan_chargily_checkout_start(
    *, user, plan_code: str, success_url: str, failure_url: str, now: datetime | None = None
) -> dict:
    """Pay one period of a plan in DZD. Renewing the same Chargily plan early is allowed (the
    new period starts when the current one ends); any other current paid plan is a conflict."""
    now = now or timezone.now()
    plan = Plan.objects.filter(code=str(plan_code or ""), is_active=True).first()
    if plan is None or not plan.is_paid:
        raise ApiError("invalid_request", f"Unknown or unavailable plan: {plan_code}", param="plan_code")
    if not plan.price_dzd_minor:
        raise ApiError("invalid_request", f"The {plan.name} plan has no DZD price.", param="plan_code")
    current = subscription_get(user=user)
    if current is not None and not (
        current.gateway == Gateway.CHARGILY
        and (current.plan_id == plan.pk or (current.current_period_end or now) <= now)
    ):
        raise ApiError(
            "conflict",
            f"You already have the {current.plan.name} plan until it ends or is canceled.",
            param="plan_code",
        )
    return checkout_session_start(
        user=user,
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


# =============================================================================================
# Webhook events
# =============================================================================================


def chargily_event_parse(*, payload: bytes, signature: str) -> dict:
    """Verify the ``signature`` header and return the event. Raises ApiError 400."""
    if not chargily_client.signature_is_valid(
        payload=payload, signature=signature, secret=chargily_secret_get()
    ):
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


def chargily_event_store(*, event: dict, now: datetime | None = None) -> tuple[ChargilyEvent, bool]:
    """Store a verified event; ``(row, False)`` when this event id was already stored."""
    now = now or timezone.now()
    livemode = event.get("livemode")
    try:
        with transaction.atomic():
            row = ChargilyEvent.objects.create(
                chargily_event_id=event["id"][:255],
                type=event["type"][:100],
                livemode=livemode is True or str(livemode).lower() == "true",
                payload=event,
                received_at=now,
            )
        return row, True
    except IntegrityError:
        return ChargilyEvent.objects.get(chargily_event_id=event["id"][:255]), False


def chargily_event_process(*, event: ChargilyEvent, now: datetime | None = None) -> ChargilyEvent:
    """Process a stored event once. Concurrent deliveries queue on the row lock; the second
    sees it processed and does nothing. A failure rolls back the handlers' writes, is recorded
    on the row (``failed``) and raised again, so Chargily's retry runs it again."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            row = lock_objects(ChargilyEvent.objects.filter(pk=event.pk))[0]
            if row.status in (ChargilyEvent.Status.PROCESSED, ChargilyEvent.Status.IGNORED):
                return row
            handled = _chargily_dispatch(event=row.payload, event_id=row.chargily_event_id, now=now)
            row.status = ChargilyEvent.Status.PROCESSED if handled else ChargilyEvent.Status.IGNORED
            row.error = ""
            row.attempts += 1
            row.processed_at = now
            row.save(update_fields=["status", "error", "attempts", "processed_at"])
            return row
    except Exception as exc:  # recorded on the row and raised again, never swallowed
        ChargilyEvent.objects.filter(pk=event.pk).update(
            status=ChargilyEvent.Status.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            attempts=F("attempts") + 1,
        )
        logger.exception(
            "chargily event processing failed", extra={"chargily_event_id": event.chargily_event_id}
        )
        raise ChargilyEventProcessingError(str(exc)) from exc


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
        logger.warning("chargily event for an unknown checkout", extra={"chargily_event_id": event_id})
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
    paid_minor = chargily_client.amount_to_dzd_minor(int(amount))
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
        "client_reference_id": str(checkout.user_id),
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


def chargily_event_reprocess(*, event: ChargilyEvent, now: datetime | None = None) -> ChargilyEvent:
    """Admin action: try a failed (or stuck) event again."""
    return chargily_event_process(event=event, now=now)


# =============================================================================================
# Simulated checkout (DEBUG, no API key)
# =============================================================================================


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
        "amount": checkout.amount_minor // chargily_client.DZD_MINOR_PER_UNIT,
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
    return payload, chargily_client.signature_compute(payload=payload, secret=chargily_secret_get())


# =============================================================================================
# One-period plans: renewal reminder and end of period
# =============================================================================================


def _subscription_cache_forget(user_id: int) -> None:
    transaction.on_commit(lambda: cache.delete(user_plan_cache_key(user_id)))


def _chargily_entitled():
    return Subscription.objects.filter(gateway=Gateway.CHARGILY, status__in=Subscription.ENTITLED_STATUSES)


def chargily_periods_expire(*, now: datetime | None = None) -> int:
    """End Chargily periods that are over (the plan already stopped applying at
    ``current_period_end``; this makes the row say so). Safe to run twice."""
    now = now or timezone.now()
    ended = 0
    for row_id, user_id in (
        _chargily_entitled().filter(current_period_end__lte=now).values_list("pk", "user_id")
    ):
        with transaction.atomic():
            if Subscription.objects.filter(pk=row_id, status__in=Subscription.ENTITLED_STATUSES).update(
                status=Subscription.Status.CANCELED, ended_at=F("current_period_end"), updated_at=now
            ):
                ended += 1
                _subscription_cache_forget(user_id)
    return ended


def chargily_renewal_reminders_send(*, now: datetime | None = None) -> int:
    """Email each Chargily plan ending within CHARGILY_RENEWAL_REMINDER_DAYS, once per period;
    skipped when the user already paid the next period."""
    now = now or timezone.now()
    horizon = now + timedelta(days=settings.CHARGILY_RENEWAL_REMINDER_DAYS)
    renewed = _chargily_entitled().filter(
        user_id=OuterRef("user_id"), current_period_end__gt=OuterRef("current_period_end")
    )
    due = (
        _chargily_entitled()
        .filter(
            current_period_end__gt=now, current_period_end__lte=horizon, renewal_reminder_sent_at__isnull=True
        )
        .exclude(Exists(renewed))
        .values_list("pk", flat=True)
    )
    return sum(chargily_renewal_reminder_send(subscription_id=pk, now=now) for pk in list(due))


def chargily_renewal_reminder_send(*, subscription_id: int, now: datetime | None = None) -> bool:
    """One reminder per period: the marker (conditional UPDATE) and the email commit together,
    so a failed send is retried by the next run and a second run sends nothing."""
    now = now or timezone.now()
    with transaction.atomic():
        if not Subscription.objects.filter(pk=subscription_id, renewal_reminder_sent_at__isnull=True).update(
            renewal_reminder_sent_at=now
        ):
            return False
        row = Subscription.objects.select_related("user", "plan").get(pk=subscription_id)
        send_mail(
            f"Tollgate: your {row.plan.name} plan ends on {row.current_period_end:%Y-%m-%d}",
            f"Your {row.plan.name} plan, paid with Chargily Pay, ends on "
            f"{row.current_period_end:%Y-%m-%d %H:%M} UTC and does not renew by itself.\n\n"
            f"Renew it (the new period starts when this one ends): "
            f"{settings.SITE_URL}{reverse('billing:pricing')}\n",
            settings.DEFAULT_FROM_EMAIL,
            [row.user.email],
        )
    return True
