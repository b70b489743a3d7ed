"""Fulfilment registry: how apps that billing must not import get told about payments, and how
billing's services find the payment gateways without importing them.

``credits`` and ``organizations`` register their handlers in ``AppConfig.ready()``; the
webhook dispatches to them. Billing never imports those apps.

- Checkout handlers are keyed by our CheckoutSession row's ``kind`` (``"plan"`` is billing's
  own, ``"credit_pack"`` is credits'). A handler receives a session dict and the event id, and
  must be idempotent on the session id. In that dict the id, ``client_reference_id`` (the
  paying workspace's id), ``metadata`` (``workspace_id``; a checkout opened before workspaces
  carries ``user_id`` instead: ``billing.selectors.workspace_for_metadata_get`` reads both)
  and ``currency`` are our row's (what the checkout was opened for), never the event's; only
  payment facts (``payment_status``, ``payment_intent``, ``subscription``, ``customer``,
  ``amount_total``) come from the gateway (see ``billing.fulfilment``).
- Event handlers are keyed by Stripe event type and receive the whole event dict. Several may
  be registered for one type (e.g. ``customer.subscription.updated`` for workspaces' plans and for
  organizations); each ignores objects that are not its own.
- Payment gateways are registered by dotted path in ``PAYMENT_GATEWAYS`` (one line per gateway)
  and loaded on first use: the gateway modules use billing's services, so services reach them
  only through here (``gateway_get``), which keeps ``services`` → ``gateways`` free of a cycle.
"""

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from django.utils.module_loading import import_string

CheckoutHandler = Callable[..., None]  # handler(*, session: dict, event_id: str) -> None
EventHandler = Callable[..., None]  # handler(*, event: dict) -> None

_checkout_handlers: dict[str, CheckoutHandler] = {}
_event_handlers: dict[str, list[EventHandler]] = defaultdict(list)


def checkout_handler_register(kind: str, handler: CheckoutHandler) -> None:
    _checkout_handlers[kind] = handler


def checkout_handler_get(kind: str) -> CheckoutHandler | None:
    return _checkout_handlers.get(kind)


def event_handler_register(event_type: str, handler: EventHandler) -> None:
    if handler not in _event_handlers[event_type]:
        _event_handlers[event_type].append(handler)


def event_handlers_get(event_type: str) -> list[EventHandler]:
    return list(_event_handlers.get(event_type, ()))


# Each path names a ``billing.gateways.base.PaymentGateway`` object; the key is its ``name``.
PAYMENT_GATEWAYS = (
    "billing.gateways.stripe.GATEWAY",
    "billing.gateways.chargily.GATEWAY",
)
_gateways: dict[str, Any] = {}


def gateway_get(name: str) -> Any | None:
    """The registered gateway called ``name`` (a ``Gateway`` value), None when there is none."""
    if not _gateways:
        for path in PAYMENT_GATEWAYS:
            gateway = import_string(path)
            _gateways[gateway.name] = gateway
    return _gateways.get(name)
