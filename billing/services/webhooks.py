"""The one webhook pipeline, for every gateway: verify → store (unique event id) → lock the row
→ dispatch → mark processed / ignored / failed; the admin's reprocess runs the same steps.

Each gateway (``billing.gateways``, found through ``billing.registry``) only verifies and parses
its deliveries and maps an event to billing; everything here is the same for all of them:
- an event is stored before it is acted on; a replay of an event id finds the stored row;
- concurrent deliveries of one event queue on its row lock, and whoever comes second sees it
  done and does nothing; a duplicate of a done event answers 200 without running anything;
- a failure rolls back the handlers' writes, is recorded on the row (``failed``) and raised
  again as :class:`WebhookEventProcessingError`, so the gateway's retry (or the admin) runs it
  again; a ``CheckoutEventRejected`` is final: recorded as ``failed`` with the reason, answered
  200, never retried into success.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from django.db import IntegrityError, models, transaction
from django.db.models import F
from django.utils import timezone

from core.exceptions import ApiError
from core.locks import lock_objects

from .. import registry
from ..fulfilment import CheckoutEventRejected
from ..models import Gateway

logger = logging.getLogger("tollgate.billing")


class WebhookEventProcessingError(Exception):
    """Processing a stored event failed; the error is recorded on the event row."""


# The names callers knew per gateway: one class, so either catches any gateway's failure.
StripeEventProcessingError = ChargilyEventProcessingError = WebhookEventProcessingError


def _gateway(name: str):
    gateway = registry.gateway_get(name)
    if gateway is None:
        raise ValueError(f"no payment gateway registered as {name!r}")
    return gateway


def webhook_event_store(
    *, gateway: str, event: dict, now: datetime | None = None
) -> tuple[models.Model, bool]:
    """Store a verified event; ``(row, False)`` when this event id was already stored."""
    spec = _gateway(gateway)
    fields = spec.event_row(event=event)
    try:  # insert first: a new event is the common case, a replay finds the stored row
        with transaction.atomic():
            row = spec.event_model.objects.create(**fields, payload=event, received_at=now or timezone.now())
        return row, True
    except IntegrityError:
        return spec.event_model.objects.get(**{spec.event_id_field: fields[spec.event_id_field]}), False


def webhook_event_process(*, gateway: str, event: models.Model, now: datetime | None = None) -> models.Model:
    """Process a stored event once (see the module docstring for the rules)."""
    spec = _gateway(gateway)
    model = spec.event_model
    event_id = getattr(event, spec.event_id_field)
    now = now or timezone.now()
    try:
        with transaction.atomic():
            row = lock_objects(model.objects.filter(pk=event.pk))[0]
            if row.status in (model.Status.PROCESSED, model.Status.IGNORED):
                return row
            handled = spec.event_dispatch(event=row.payload, event_id=event_id, now=now)
            row.status = model.Status.PROCESSED if handled else model.Status.IGNORED
            row.error = ""
            row.attempts += 1
            row.processed_at = now
            row.save(update_fields=["status", "error", "attempts", "processed_at"])
            return row
    except CheckoutEventRejected as exc:
        # Not a transient failure: a redelivery would be rejected the same way, so the gateway
        # is told it was received and the row keeps the reason for the operator.
        model.objects.filter(pk=event.pk).update(
            status=model.Status.FAILED,
            error=f"rejected: {exc}"[:2000],
            attempts=F("attempts") + 1,
            processed_at=now,
        )
        logger.warning(
            "%s event rejected", spec.name, extra={spec.event_id_field: event_id, "reason": str(exc)}
        )
        return model.objects.get(pk=event.pk)
    except Exception as exc:  # recorded on the row and raised again, never swallowed
        model.objects.filter(pk=event.pk).update(
            status=model.Status.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            attempts=F("attempts") + 1,
        )
        logger.exception("%s event processing failed", spec.name, extra={spec.event_id_field: event_id})
        raise WebhookEventProcessingError(str(exc)) from exc


def webhook_event_reprocess(
    *, gateway: str, event: models.Model, now: datetime | None = None
) -> models.Model:
    """Admin action: try a failed (or stuck) event again."""
    return webhook_event_process(gateway=gateway, event=event, now=now)


def webhook_receive(*, gateway: str, payload: bytes, headers: Mapping[str, str]) -> dict:
    """A delivery, end to end: the webhook views' whole work. Returns the 200 body
    (``status`` is absent on a duplicate of a done event); raises ``ApiError`` 400 for a bad
    signature or body, 503 when the event was stored but could not be processed."""
    event = _gateway(gateway).event_verify(payload=payload, headers=headers)
    row, created = webhook_event_store(gateway=gateway, event=event)
    if not created and row.status not in (row.Status.FAILED, row.Status.RECEIVED):
        return {"received": True, "duplicate": True}
    try:
        row = webhook_event_process(gateway=gateway, event=row)
    except WebhookEventProcessingError:
        raise ApiError(
            "service_unavailable",
            "The event was stored but could not be processed; it will be retried.",
        )
    return {"received": True, "status": row.status, "duplicate": not created}


# --- Per-gateway names (callers, admin actions, the sync command) ------------------------------


def stripe_event_store(*, event: dict, now: datetime | None = None):
    return webhook_event_store(gateway=Gateway.STRIPE, event=event, now=now)


def stripe_event_process(*, event, now: datetime | None = None):
    return webhook_event_process(gateway=Gateway.STRIPE, event=event, now=now)


def stripe_event_reprocess(*, event, now: datetime | None = None):
    return webhook_event_reprocess(gateway=Gateway.STRIPE, event=event, now=now)


def chargily_event_store(*, event: dict, now: datetime | None = None):
    return webhook_event_store(gateway=Gateway.CHARGILY, event=event, now=now)


def chargily_event_process(*, event, now: datetime | None = None):
    return webhook_event_process(gateway=Gateway.CHARGILY, event=event, now=now)


def chargily_event_reprocess(*, event, now: datetime | None = None):
    return webhook_event_reprocess(gateway=Gateway.CHARGILY, event=event, now=now)
