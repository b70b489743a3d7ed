"""What every payment gateway provides.

A gateway is one module under ``billing/gateways/`` with one object satisfying
:class:`PaymentGateway`, registered by dotted path in ``billing.registry.PAYMENT_GATEWAYS``.
Everything generic — storing events (unique id), the row lock, marking processed/failed, the
duplicate answer — lives once in ``billing.services.webhooks``; a gateway only says how to
open a checkout, how to verify and parse its events, and what an event means for billing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from django.db import models

from ..models import CheckoutSession


class PaymentGateway(Protocol):
    """One payment provider (Stripe, Chargily Pay, …) seen from billing."""

    name: str  # a ``billing.models.Gateway`` value, stored on checkouts and payments
    event_model: type[models.Model]  # its webhook event table (same columns as StripeEvent)
    event_id_field: str  # that table's unique event id column

    def checkout_open(self, *, checkout: CheckoutSession) -> dict:
        """Save the unsaved ``checkout`` (and its pending PaymentTransaction), then open it at
        the provider outside any transaction; return at least ``checkout_url`` and
        ``session_id`` (our checkout reference). Raises ``ApiError``."""
        ...

    def event_verify(self, *, payload: bytes, headers: Mapping[str, str]) -> dict:
        """Authenticate a webhook delivery and return the event. Raises ``ApiError``
        (``invalid_signature`` 400, ``service_unavailable`` 503 when not configured)."""
        ...

    def event_row(self, *, event: dict) -> dict:
        """Columns of the stored event row besides ``payload`` and ``received_at``; includes
        ``event_id_field``."""
        ...

    def event_dispatch(self, *, event: dict, event_id: str, now: datetime) -> bool:
        """Apply a stored event (inside its transaction, under its row lock); False when it
        is not one billing handles (stored as ``ignored``)."""
        ...
