"""Which Stripe a caller of the Stripe API functions talks to: the real one
(``billing.gateways.stripe``) or, in DEBUG without STRIPE_SECRET_KEY, the local simulation
(``billing.gateways.stripe_simulated``), which answers the same functions with the same shapes.
Chosen per call, so a test (or a deployment) that sets STRIPE_SECRET_KEY reaches Stripe."""

from __future__ import annotations

from types import ModuleType

from . import stripe, stripe_simulated


def stripe_api_get() -> ModuleType:
    """The module whose ``customer_create``, ``subscription_create`` and ``meter_event_create``
    to call."""
    return stripe_simulated if stripe_simulated.stripe_simulated_enabled() else stripe
