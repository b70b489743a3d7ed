"""The simulated Stripe customer portal (DEBUG only, when Stripe is not configured): change plan
with a proration preview, cancel at the period end, resume, and the invoices list.

Each action builds what Stripe's portal would make Stripe send — ``customer.subscription.updated``
(the new price, or ``cancel_at_period_end``) and, for a plan change, an ``invoice.paid`` with the
proration lines (Stripe's ``proration_behavior=always_invoice``) — and hands it to the one webhook
pipeline (``stripe_simulated.event_deliver``). Our mirror (``billing.services.subscriptions``)
changes only because of those events, exactly as with the real portal.

Prorations follow Stripe's rule: the unused time of the old price is credited and the remaining
time of the new one charged, in proportion to the seconds left in the period; a change of
interval restarts the period now (full new price, less the credit). A negative total becomes a
credit on the customer's balance, applied to the next invoice. Only the simulated checkout's
subscriptions (``sub_sim_…``) are handled; offline plans have no Stripe price, so the simulated
subscription names its plan in ``metadata.plan_code`` as well as in a ``price_sim_<code>`` price.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from dateutil.relativedelta import relativedelta
from django.utils import timezone

from accounts.selectors import workspace_billing_emails
from accounts.services import audit_record
from core.exceptions import ApiError

from ..models import Gateway, PaymentTransaction, Plan, StripeEvent, Subscription
from ..selectors import plan_list_public, subscription_get
from .stripe_simulated import SUBSCRIPTION_PREFIX, event_deliver, simulated_id, stripe_simulated_enabled

PLAN_KIND = "plan"


def _interval(plan: Plan) -> relativedelta:
    return relativedelta(years=1) if plan.interval == Plan.Interval.YEAR else relativedelta(months=1)


def _unix(at: datetime | None) -> int | None:
    return int(at.timestamp()) if at else None


def _price_id(plan: Plan) -> str:
    return plan.stripe_price_id or f"price_sim_{plan.code}"


def simulated_portal_subscription_get(*, workspace) -> Subscription | None:
    """The workspace's live subscription from the simulated checkout, which this portal manages."""
    if not stripe_simulated_enabled():
        return None
    row = subscription_get(workspace=workspace)
    if (
        row is None
        or row.gateway != Gateway.STRIPE
        or not row.stripe_subscription_id.startswith(SUBSCRIPTION_PREFIX)
    ):
        return None
    return row


def _subscription_required(*, workspace) -> Subscription:
    row = simulated_portal_subscription_get(workspace=workspace)
    if row is None:
        raise ApiError("not_found", "This workspace has no subscription to manage here.")
    return row


def _portal_audit(*, row: Subscription, action: str, actor, **details) -> None:
    """Who asked for the change (the mirror's own audit, from the webhook, has no actor)."""
    audit_record(
        action=action,
        actor=actor,
        workspace=row.workspace,
        target=f"subscription:{row.pk}",
        details={"plan": row.plan.code, "gateway": row.gateway, **details},
    )


def _period(row: Subscription, now: datetime) -> tuple[datetime, datetime]:
    end = row.current_period_end if row.current_period_end and row.current_period_end > now else None
    end = end or now + _interval(row.plan)
    return end - _interval(row.plan), end


def plan_change_options(*, subscription: Subscription) -> list[Plan]:
    """Plans the subscription may move to: public, paid, same currency (Stripe bills one
    currency per subscription)."""
    return [
        plan
        for plan in plan_list_public()
        if plan.is_paid and plan.currency == subscription.plan.currency and plan.pk != subscription.plan_id
    ]


@dataclass(frozen=True)
class ProrationLine:
    description: str
    amount_minor: int  # minor units of the preview's currency; negative = credit
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True)
class ProrationPreview:
    plan: Plan
    currency: str
    lines: list[ProrationLine]
    total_minor: int  # sum of the lines
    starting_balance_minor: int  # the customer's balance before (negative = credit held)
    amount_due_minor: int  # what is charged now (never negative)
    ending_balance_minor: int  # the credit left afterwards (zero or negative)
    period_start: datetime
    period_end: datetime  # of the subscription after the change


def _customer_balance(customer_id: str) -> int:
    """The customer's balance after its latest invoice (Stripe's ``ending_balance``)."""
    payload = (
        StripeEvent.objects.filter(type="invoice.paid", payload__data__object__customer=customer_id)
        .exclude(status=StripeEvent.Status.FAILED)
        .order_by("-stripe_created_at", "-received_at")
        .values_list("payload", flat=True)
        .first()
    )
    invoice = ((payload or {}).get("data") or {}).get("object") or {}
    return int(invoice.get("ending_balance") or 0)


def _share(amount_minor: int, remaining: float, total: float) -> int:
    return round(amount_minor * remaining / total) if total > 0 else 0


def proration_preview(
    *, subscription: Subscription, plan_code: str, now: datetime | None = None
) -> ProrationPreview:
    """What changing to ``plan_code`` now would invoice. The plan change itself invoices
    exactly this (it calls this function)."""
    now = now or timezone.now()
    plan = next((p for p in plan_change_options(subscription=subscription) if p.code == plan_code), None)
    if plan is None:
        raise ApiError("invalid_request", f"You cannot change to the plan {plan_code!r}.", param="plan")
    old = subscription.plan
    start, end = _period(subscription, now)
    total_seconds = (end - start).total_seconds()
    remaining = max((end - now).total_seconds(), 0.0)
    on = now.strftime("%Y-%m-%d")
    lines = [
        ProrationLine(
            f"Unused time on {old.name} after {on}",
            -_share(old.price_minor, remaining, total_seconds),
            now,
            end,
        )
    ]
    if plan.interval == old.interval:
        lines.append(
            ProrationLine(
                f"Remaining time on {plan.name} after {on}",
                _share(plan.price_minor, remaining, total_seconds),
                now,
                end,
            )
        )
        new_start, new_end = start, end
    else:  # Stripe restarts the billing cycle when the interval changes
        new_start, new_end = now, now + _interval(plan)
        lines.append(ProrationLine(f"{plan.name} from {on}", plan.price_minor, new_start, new_end))
    total = sum(line.amount_minor for line in lines)
    balance = _customer_balance(subscription.stripe_customer_id)
    return ProrationPreview(
        plan=plan,
        currency=plan.currency,
        lines=lines,
        total_minor=total,
        starting_balance_minor=balance,
        amount_due_minor=max(total + balance, 0),
        ending_balance_minor=min(total + balance, 0),
        period_start=new_start,
        period_end=new_end,
    )


def _subscription_object(
    row: Subscription,
    *,
    plan: Plan,
    period_start: datetime,
    period_end: datetime,
    cancel_at_period_end: bool,
    now: datetime,
    latest_invoice: str | None = None,
) -> dict:
    """The subscription as Stripe would send it after the change."""
    sub_id = row.stripe_subscription_id
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": row.stripe_customer_id,
        "status": row.status,
        "collection_method": "charge_automatically",
        "created": _unix(row.created_at),
        "start_date": _unix(row.activated_at or row.created_at),
        "billing_cycle_anchor": _unix(period_start),
        "cancel_at_period_end": cancel_at_period_end,
        "cancel_at": _unix(period_end) if cancel_at_period_end else None,
        "canceled_at": _unix(now) if cancel_at_period_end else None,
        "cancellation_details": {
            "comment": None,
            "feedback": None,
            "reason": "cancellation_requested" if cancel_at_period_end else None,
        },
        "ended_at": None,
        "currency": plan.currency,
        "livemode": False,
        "latest_invoice": latest_invoice,
        "metadata": {"kind": PLAN_KIND, "workspace_id": str(row.workspace_id), "plan_code": plan.code},
        "items": {
            "object": "list",
            "data": [
                {
                    "id": simulated_id("si_sim_", sub_id),
                    "object": "subscription_item",
                    "subscription": sub_id,
                    "quantity": 1,
                    "price": {
                        "id": _price_id(plan),
                        "object": "price",
                        "active": True,
                        "currency": plan.currency,
                        "unit_amount": plan.price_minor,
                        "unit_amount_decimal": str(plan.price_minor),
                        "lookup_key": plan.code,
                        "product": f"prod_sim_{plan.code}",
                        "type": "recurring",
                        "recurring": {
                            "interval": plan.interval,
                            "interval_count": 1,
                            "usage_type": "licensed",
                        },
                    },
                    "current_period_start": _unix(period_start),
                    "current_period_end": _unix(period_end),
                }
            ],
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
    }


def _invoice_object(row: Subscription, preview: ProrationPreview, *, now: datetime) -> dict:
    invoice_id = simulated_id("in_sim_")
    sub_id = row.stripe_subscription_id
    item_id = simulated_id("si_sim_", sub_id)
    return {
        "id": invoice_id,
        "object": "invoice",
        "number": f"SIM-{row.workspace_id:04d}-{_unix(now)}",
        "customer": row.stripe_customer_id,
        "customer_email": next(iter(workspace_billing_emails(workspace=row.workspace)), None),
        "billing_reason": "subscription_update",
        "collection_method": "charge_automatically",
        "status": "paid",
        "paid": True,
        "currency": preview.currency,
        "subtotal": preview.total_minor,
        "total": preview.total_minor,
        "starting_balance": preview.starting_balance_minor,
        "ending_balance": preview.ending_balance_minor,
        "amount_due": preview.amount_due_minor,
        "amount_paid": preview.amount_due_minor,
        "amount_remaining": 0,
        "created": _unix(now),
        "period_start": _unix(now),
        "period_end": _unix(now),
        "status_transitions": {"finalized_at": _unix(now), "paid_at": _unix(now)},
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "livemode": False,
        "parent": {
            "type": "subscription_details",
            "subscription_details": {
                "subscription": sub_id,
                "metadata": {
                    "kind": PLAN_KIND,
                    "workspace_id": str(row.workspace_id),
                    "plan_code": preview.plan.code,
                },
            },
        },
        "lines": {
            "object": "list",
            "has_more": False,
            "url": f"/v1/invoices/{invoice_id}/lines",
            "data": [
                {
                    "id": simulated_id("il_sim_"),
                    "object": "line_item",
                    "invoice": invoice_id,
                    "amount": line.amount_minor,
                    "currency": preview.currency,
                    "description": line.description,
                    "quantity": 1,
                    "period": {"start": _unix(line.period_start), "end": _unix(line.period_end)},
                    "parent": {
                        "type": "subscription_item_details",
                        "subscription_item_details": {
                            "proration": True,
                            "subscription": sub_id,
                            "subscription_item": item_id,
                        },
                    },
                }
                for line in preview.lines
            ],
        },
    }


def simulated_plan_change(
    *, workspace, plan_code: str, now: datetime | None = None, actor=None
) -> ProrationPreview:
    """Move the workspace's subscription to ``plan_code`` and invoice the proration now."""
    now = now or timezone.now()
    row = _subscription_required(workspace=workspace)
    if row.cancel_at_period_end:
        raise ApiError(
            "conflict", "Your subscription ends at the period end: resume it before changing plan."
        )
    preview = proration_preview(subscription=row, plan_code=plan_code, now=now)
    _portal_audit(
        row=row, action="subscription.plan_change_requested", actor=actor, to_plan=preview.plan.code
    )
    invoice = _invoice_object(row, preview, now=now)
    subscription = _subscription_object(
        row,
        plan=preview.plan,
        period_start=preview.period_start,
        period_end=preview.period_end,
        cancel_at_period_end=False,
        now=now,
        latest_invoice=invoice["id"],
    )
    old_start, old_end = _period(row, now)
    previous = _subscription_object(
        row, plan=row.plan, period_start=old_start, period_end=old_end, cancel_at_period_end=False, now=now
    )
    event_deliver(
        event_type="customer.subscription.updated",
        obj=subscription,
        now=now,
        previous_attributes={"items": previous["items"], "metadata": previous["metadata"]},
    )
    event_deliver(event_type="invoice.paid", obj=invoice, now=now)
    return preview


def _cancel_flag_set(*, workspace, cancel: bool, now: datetime | None, actor=None) -> Subscription:
    now = now or timezone.now()
    row = _subscription_required(workspace=workspace)
    if row.cancel_at_period_end == cancel:
        return row  # already so: Stripe's portal would show the same state, and send nothing
    action = "subscription.cancel_requested" if cancel else "subscription.resume_requested"
    _portal_audit(row=row, action=action, actor=actor)
    start, end = _period(row, now)
    subscription = _subscription_object(
        row, plan=row.plan, period_start=start, period_end=end, cancel_at_period_end=cancel, now=now
    )
    event_deliver(
        event_type="customer.subscription.updated",
        obj=subscription,
        now=now,
        previous_attributes={"cancel_at_period_end": not cancel},
    )
    row.refresh_from_db()
    return row


def simulated_subscription_cancel(*, workspace, now: datetime | None = None, actor=None) -> Subscription:
    """Cancel at the end of the period: the plan stays until then."""
    return _cancel_flag_set(workspace=workspace, cancel=True, now=now, actor=actor)


def simulated_subscription_resume(*, workspace, now: datetime | None = None, actor=None) -> Subscription:
    """Undo a cancel at period end: the subscription renews again."""
    return _cancel_flag_set(workspace=workspace, cancel=False, now=now, actor=actor)


@dataclass(frozen=True)
class InvoiceRow:
    number: str
    created_at: datetime
    description: str
    total_minor: int
    amount_paid_minor: int
    ending_balance_minor: int
    currency: str
    lines: list[dict]


def simulated_invoices_list(*, workspace, limit: int = 50) -> list[InvoiceRow]:
    """The paid invoices of the workspace's subscriptions, newest first, from the stored
    ``invoice.paid`` events (each invoice once)."""
    sub_ids = list(
        Subscription.objects.filter(workspace_id=workspace.pk, gateway=Gateway.STRIPE).values_list(
            "stripe_subscription_id", flat=True
        )
    )
    payloads = (
        StripeEvent.objects.filter(
            type="invoice.paid", payload__data__object__parent__subscription_details__subscription__in=sub_ids
        )
        .exclude(status=StripeEvent.Status.FAILED)
        .order_by("-stripe_created_at", "-received_at")
        .values_list("payload", flat=True)[: limit * 2]
    )
    seen: set[str] = set()
    rows = []
    for payload in payloads:
        invoice = (payload.get("data") or {}).get("object") or {}
        if invoice.get("id") in seen:
            continue
        seen.add(invoice.get("id"))
        lines = (invoice.get("lines") or {}).get("data") or []
        rows.append(
            InvoiceRow(
                number=invoice.get("number") or invoice.get("id", ""),
                created_at=datetime.fromtimestamp(int(invoice.get("created") or 0), tz=UTC),
                description="Plan change (prorated)"
                if invoice.get("billing_reason") == "subscription_update"
                else "Subscription",
                total_minor=int(invoice.get("total") or 0),
                amount_paid_minor=int(invoice.get("amount_paid") or 0),
                ending_balance_minor=int(invoice.get("ending_balance") or 0),
                currency=invoice.get("currency") or "",
                lines=[
                    {"description": line.get("description", ""), "amount_minor": line.get("amount", 0)}
                    for line in lines
                ],
            )
        )
    return rows[:limit]


def receipts_list(*, workspace, limit: int = 50):
    """The workspace's paid checkouts (plans and credit packs, either gateway), newest first."""
    return (
        PaymentTransaction.objects.filter(workspace_id=workspace.pk, status=PaymentTransaction.Status.PAID)
        .select_related("checkout")
        .order_by("-completed_at", "-pk")[:limit]
    )
