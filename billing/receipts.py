"""The customer's payments as the Billing and Credits pages list them, each with the page where
the gateway shows it (a receipt). Nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass

from .gateways.chargily import chargily_simulated_enabled
from .gateways.stripe import simulated_checkout_enabled
from .models import Gateway, PaymentTransaction

# The columns ``payment_receipt_get`` reads, for ``.values()`` queries.
RECEIPT_FIELDS = ("gateway", "receipt_url", "checkout__checkout_url", "checkout__is_simulated")


@dataclass(frozen=True)
class PaymentReceipt:
    """Where the customer sees a paid payment: the gateway's page for it."""

    url: str
    gateway: str  # billing.models.Gateway
    is_simulated: bool


@dataclass(frozen=True)
class PaymentRow:
    payment: PaymentTransaction
    receipt: PaymentReceipt | None


def payment_receipt_get(payment: dict) -> PaymentReceipt | None:
    """Stripe: the charge's receipt page (``receipt_url``, from its charge events or the
    off-session charge), else only the simulated checkout's page (it shows the completed
    payment; DEBUG only). Chargily: its payment page (``checkout_url``), which shows the payment
    once paid. Simulated pages only while their simulator is on."""
    gateway, simulated = payment["gateway"], bool(payment["checkout__is_simulated"])
    url = payment["checkout__checkout_url"] or ""
    if gateway == Gateway.STRIPE and payment["receipt_url"]:
        return PaymentReceipt(url=payment["receipt_url"], gateway=gateway, is_simulated=False)
    if not url:
        return None
    if gateway == Gateway.CHARGILY and (not simulated or chargily_simulated_enabled()):
        return PaymentReceipt(url=url, gateway=gateway, is_simulated=simulated)
    if gateway == Gateway.STRIPE and simulated and simulated_checkout_enabled():
        return PaymentReceipt(url=url, gateway=gateway, is_simulated=True)
    return None


def payment_history_list(*, workspace, limit: int = 50) -> list[PaymentRow]:
    """The workspace's settled payments (plans and credit packs, either gateway; paid or
    failed — a checkout left open is not a payment), newest first. One query."""
    payments = (
        PaymentTransaction.objects.filter(
            workspace_id=workspace.pk,
            status__in=(PaymentTransaction.Status.PAID, PaymentTransaction.Status.FAILED),
        )
        .select_related("checkout")
        .order_by("-created_at", "-pk")[:limit]
    )
    rows = []
    for payment in payments:
        receipt = None
        checkout = payment.checkout
        if payment.status == PaymentTransaction.Status.PAID and (
            checkout is None or checkout.workspace_id in (None, workspace.pk)
        ):
            receipt = payment_receipt_get(
                {
                    "gateway": payment.gateway,
                    "receipt_url": payment.receipt_url,
                    "checkout__checkout_url": checkout.checkout_url if checkout else "",
                    "checkout__is_simulated": checkout.is_simulated if checkout else False,
                }
            )
        rows.append(PaymentRow(payment=payment, receipt=receipt))
    return rows
