"""The customer's Billing page: the plan and its renewal, the credit balance with auto top-up,
and the payments with their receipts. Plan changes go through the pricing page and the billing
portal (Stripe's, or the simulated one offline); packs through the Credits page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.tenancy import page_context_get
from billing.receipts import payment_history_list
from credits.selectors import auto_top_up_get, credit_balance_get

from .labels import (
    GATEWAY_LABELS,
    PAYMENT_KIND_LABELS,
    PAYMENT_STATUS_LABELS,
    PLAN_INTERVAL_LABELS,
    PLAN_STATUS_LABELS,
)
from .selectors import customer

PAYMENT_ROWS = 50


def plan_card_context(*, workspace, now) -> dict:
    """The plan card's data with its status and interval in the reader's language (Overview
    and Billing show the same card)."""
    plan_card = customer.plan_card_get(workspace=workspace, now=now)
    return {
        "plan_card": plan_card,
        "plan_status_label": PLAN_STATUS_LABELS.get(plan_card.status, plan_card.status),
        "plan_interval_label": PLAN_INTERVAL_LABELS.get(plan_card.plan.interval, plan_card.plan.interval),
    }


@login_required
@require_GET
def billing_page(request):
    ctx = page_context_get(request, "billing.read")
    workspace = ctx.workspace
    context = {
        "workspace_context": ctx,
        "perms_ws": ctx.permissions,
        **plan_card_context(workspace=workspace, now=timezone.now()),
        "balance": credit_balance_get(workspace=workspace),
        "auto_top_up": auto_top_up_get(workspace=workspace),
        "payments": [
            {
                "payment": row.payment,
                "receipt": row.receipt,
                "kind_label": PAYMENT_KIND_LABELS.get(row.payment.kind, row.payment.kind),
                "status_label": PAYMENT_STATUS_LABELS.get(row.payment.status, row.payment.status),
                "gateway_label": GATEWAY_LABELS.get(row.payment.gateway, row.payment.gateway),
            }
            for row in payment_history_list(workspace=workspace, limit=PAYMENT_ROWS)
        ],
    }
    return render(request, "dashboards/billing.html", context)


billing_page.permission_required = {"get": "billing.read"}  # read by the workspace sweep (tests/)
