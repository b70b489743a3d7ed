"""An operator's change of a workspace's plan (the admin's customer page), by the route its
subscription allows:

- ``"portal"``: a simulated Stripe subscription changes as its (simulated) portal changes it
  (prorated, invoiced now);
- ``"stripe"``: a real Stripe subscription changes only at Stripe (the customer's portal or the
  Stripe dashboard); its events update us — refused here;
- ``"period"``: no Stripe subscription (free or a Chargily period): one period of the plan, with
  no payment, as a Chargily payment would activate it; it then ends unless renewed.

Audited as ``workspace.plan_changed`` with the operator as actor and the reason.
"""

from __future__ import annotations

import uuid

from django.db import transaction

from accounts.services import audit_record
from core.exceptions import ApiError

from .gateways.stripe_simulated import SUBSCRIPTION_PREFIX, stripe_simulated_enabled
from .gateways.stripe_simulated_portal import plan_change_options, simulated_plan_change
from .models import Gateway, Plan, Subscription
from .selectors import plan_for_workspace_get, subscription_get
from .services import subscription_period_activate


def plan_change_route(subscription: Subscription | None) -> str:
    """``"portal"``, ``"stripe"`` or ``"period"``: how an operator may change this plan."""
    if subscription is None or subscription.gateway != Gateway.STRIPE:
        return "period"
    if subscription.stripe_subscription_id.startswith(SUBSCRIPTION_PREFIX) and stripe_simulated_enabled():
        return "portal"
    return "stripe"


def plan_change_choices(*, subscription: Subscription | None) -> list[Plan]:
    """Plans an operator may pick: the portal's own options for a simulated Stripe subscription
    (public, paid, same currency), else every active paid plan (a private one included)."""
    route = plan_change_route(subscription)
    if route == "stripe":
        return []
    if route == "portal":
        return plan_change_options(subscription=subscription)
    return [plan for plan in Plan.objects.filter(is_active=True).order_by("sort_order", "pk") if plan.is_paid]


def plan_change_by_operator(*, workspace, plan_code: str, actor, reason: str, request=None) -> Plan:
    """Move ``workspace`` to the plan ``plan_code`` by its subscription's route (409 for a real
    Stripe subscription, 400 for a plan that route cannot offer)."""
    subscription = subscription_get(workspace=workspace)
    route = plan_change_route(subscription)
    if route == "stripe":
        raise ApiError(
            "conflict",
            "This workspace pays through a Stripe subscription: change its plan in Stripe (the "
            "customer's portal or the Stripe dashboard); Stripe's events update it here.",
        )
    plan = next((p for p in plan_change_choices(subscription=subscription) if p.code == plan_code), None)
    if plan is None:
        raise ApiError("invalid_request", f"The plan {plan_code!r} cannot be chosen here.", param="plan")
    previous = plan_for_workspace_get(workspace=workspace).code
    if route == "portal":
        simulated_plan_change(workspace=workspace, plan_code=plan.code, actor=actor)
    else:
        with transaction.atomic():
            subscription_period_activate(
                workspace=workspace, plan=plan, reference=f"admin:{actor.pk}:{uuid.uuid4().hex}"
            )
    audit_record(
        action="workspace.plan_changed",
        actor=actor,
        workspace=workspace,
        target=f"workspace:{workspace.pk}",
        details={"from": previous, "to": plan.code, "route": route, "reason": reason, "via": "admin"},
        request=request,
    )
    return plan
