"""Fulfilment registry: how apps that billing must not import get told about payments.

``credits`` and ``organizations`` register their handlers in ``AppConfig.ready()``; the
webhook dispatches to them. Billing never imports those apps.

- Checkout handlers are keyed by the Checkout Session's ``metadata["kind"]`` (``"plan"`` is
  billing's own, ``"credit_pack"`` is credits'). A handler receives the session dict and the
  Stripe event id, and must be idempotent on the session id.
- Event handlers are keyed by Stripe event type and receive the whole event dict. Several may
  be registered for one type (e.g. ``customer.subscription.updated`` for users' plans and for
  organizations); each ignores objects that are not its own.
"""

from collections import defaultdict
from collections.abc import Callable

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
