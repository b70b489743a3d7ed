"""Reads for credits. Workspace-owned reads take ``workspace=`` (the billing tenant)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from django.conf import settings
from django.db.models import Count, QuerySet, Sum

from core.money import minor_to_decimal

from .models import CreditAccount, CreditPack, CreditPurchase, EndpointCost, LedgerEntry, UpsellEvent


@dataclass(frozen=True)
class CreditBalance:
    balance: int
    available: int
    is_low: bool
    low_threshold: int
    has_purchased: bool


def credit_balance_get(*, workspace) -> CreditBalance:
    """The workspace's balance without creating an account row (one query)."""
    row = (
        CreditAccount.objects.filter(workspace=workspace)
        .values_list("balance", "held", "first_purchase_at")
        .first()
    )
    balance, held, first_purchase_at = row if row else (0, 0, None)
    available = max(balance - held, 0)
    threshold = settings.CREDITS_LOW_THRESHOLD
    return CreditBalance(
        balance=balance,
        available=available,
        is_low=available < threshold,
        low_threshold=threshold,
        has_purchased=first_purchase_at is not None,
    )


def credit_pack_list() -> QuerySet[CreditPack]:
    return CreditPack.objects.filter(is_active=True).order_by("display_order", "credits")


def _best_value_codes(packs: list[CreditPack], *, price) -> set[str]:
    """Per currency, the code of the pack with the lowest price per credit (exact fractions; a
    tie goes to the bigger pack). ``price(pack)`` gives ``(currency, minor units)`` or None."""
    best: dict[str, tuple[Fraction, int, str]] = {}
    for pack in packs:
        priced = price(pack)
        if priced is None:
            continue
        currency, amount_minor = priced
        key = (Fraction(amount_minor, pack.credits), -pack.credits, pack.code)
        if currency not in best or key < best[currency]:
            best[currency] = key
    return {code for _, _, code in best.values()}


def _price_per_credit(amount_minor: int, currency: str, credits: int) -> Decimal:
    """Major units per credit, to the tenth of a cent (``0.139``), two decimals when exact."""
    value = (minor_to_decimal(amount_minor, currency) / credits).quantize(Decimal("0.001"), ROUND_HALF_UP)
    cents = value.quantize(Decimal("0.01"))
    return cents if cents == value else value


@dataclass(frozen=True)
class CreditPackOffer:
    """A pack as the pages sell it. ``is_best_value`` is computed (lowest price per credit in
    the pack's currency), never read from ``CreditPack.is_best_value``, which an edit could leave
    on a pack that is no longer the cheapest per credit. The ``*_dzd`` fields: the Chargily price."""

    pack: CreditPack
    price_per_credit: Decimal  # major units of pack.currency
    is_best_value: bool
    price_dzd_per_credit: Decimal | None  # DZD; None when the pack is not sold in DZD
    is_best_value_dzd: bool


def credit_pack_offer_list() -> list[CreditPackOffer]:
    """Active packs in display order with their price per credit and the computed badges."""
    packs = list(credit_pack_list())
    best = _best_value_codes(packs, price=lambda pack: (pack.currency, pack.price_minor))
    best_dzd = _best_value_codes(
        packs, price=lambda pack: ("dzd", pack.price_dzd_minor) if pack.price_dzd_minor else None
    )
    return [
        CreditPackOffer(
            pack=pack,
            price_per_credit=_price_per_credit(pack.price_minor, pack.currency, pack.credits),
            is_best_value=pack.code in best,
            price_dzd_per_credit=(
                _price_per_credit(pack.price_dzd_minor, "dzd", pack.credits) if pack.price_dzd_minor else None
            ),
            is_best_value_dzd=pack.code in best_dzd,
        )
        for pack in packs
    ]


def credit_pack_public_list() -> list[dict]:
    """Packs in the public JSON shape (also embedded in 402/429 bodies). ``price_dzd_minor``: the
    Chargily Pay price in DZD centimes, null when the pack is not sold in DZD. ``best_value``:
    the lowest price per credit in the pack's currency (computed, see ``CreditPackOffer``)."""
    return [
        {
            "id": offer.pack.code,
            "name": offer.pack.name,
            "credits": offer.pack.credits,
            "price_minor": offer.pack.price_minor,
            "currency": offer.pack.currency,
            "price_dzd_minor": offer.pack.price_dzd_minor,
            "best_value": offer.is_best_value,
        }
        for offer in credit_pack_offer_list()
    ]


def credit_ledger_list(*, workspace) -> QuerySet[LedgerEntry]:
    """The workspace's ledger, newest first (``ledger_workspace_newest``)."""
    return LedgerEntry.objects.filter(workspace=workspace).order_by("-id")


def credit_ledger_entry_get(*, workspace, entry_id: int) -> LedgerEntry | None:
    """One entry of the workspace's ledger; another workspace's entry is None (the API's 404)."""
    return LedgerEntry.objects.filter(workspace=workspace, pk=entry_id).first()


def credit_workspace_delete_guard(*, workspace) -> str | None:
    """Registered with accounts: a workspace whose balance is above zero cannot be deleted
    (its members would lose paid credits). None when nothing remains."""
    balance = CreditAccount.objects.filter(workspace=workspace).values_list("balance", flat=True).first()
    return f"Credits remain ({balance})" if balance else None


def endpoint_cost_get(*, endpoint: str) -> EndpointCost | None:
    return EndpointCost.objects.filter(endpoint=endpoint, is_active=True).first()


def credit_buy_url() -> str:
    return f"{settings.SITE_URL}/credits/"


def credit_upsell_get(*, workspace) -> dict:
    """Upsell fields for 402/429 bodies: ``balance``, ``available``, ``hasPurchased``, ``packs``,
    ``buyUrl`` (the proxy answers 402 rather than 429 once the workspace has bought credits)."""
    balance = credit_balance_get(workspace=workspace)
    return {
        "balance": balance.balance,
        "available": balance.available,
        "hasPurchased": balance.has_purchased,
        "packs": credit_pack_public_list(),
        "buyUrl": credit_buy_url(),
    }


def credit_conversion_stats() -> dict:
    """Upsell funnel and revenue for the operator dashboard (amounts in minor units per currency)."""
    views = dict(UpsellEvent.objects.values("kind").annotate(n=Count("id")).values_list("kind", "n"))
    purchases = CreditPurchase.objects.aggregate(
        count=Count("id"), buyers=Count("workspace", distinct=True), credits=Sum("credits")
    )
    revenue = {
        row["currency"]: row["total"]
        for row in CreditPurchase.objects.values("currency").annotate(total=Sum("amount_minor"))
    }
    count = purchases["count"] or 0
    buyers = purchases["buyers"] or 0
    page_views = views.get(UpsellEvent.Kind.VIEW, 0) + views.get(UpsellEvent.Kind.MODAL_VIEW, 0)
    return {
        "upsell_views": page_views,
        "buy_clicks": views.get(UpsellEvent.Kind.CLICK, 0),
        "purchases": count,
        "buyers": buyers,
        "credits_sold": purchases["credits"] or 0,
        "revenue_minor": revenue,
        # Integer minor units, rounded down; None when there is nothing to divide by.
        "average_basket_minor": {cur: total // count for cur, total in revenue.items()} if count else {},
        "revenue_per_buyer_minor": {cur: total // buyers for cur, total in revenue.items()} if buyers else {},
        # Conversion as a percentage string with 2 decimals (no floats stored anywhere).
        "conversion_percent": f"{Decimal(count * 10000 // page_views) / 100:.2f}" if page_views else None,
    }


def credit_revenue_minor_get(*, start: datetime | None = None, end: datetime | None = None) -> dict[str, int]:
    """Credit pack purchases paid in [start, end) (all time without bounds), as
    ``{currency: minor units}`` (gross), whichever gateway took them."""
    purchases = CreditPurchase.objects.all()
    if start is not None:
        purchases = purchases.filter(created_at__gte=start)
    if end is not None:
        purchases = purchases.filter(created_at__lt=end)
    return {
        row["currency"]: row["total"] or 0
        for row in purchases.values("currency").annotate(total=Sum("amount_minor")).order_by("currency")
    }


def credit_balance_summary(*, workspace) -> list[tuple[str, str]]:
    """The admin's line about the workspace's credits (``accounts.registry`` summary)."""
    balance = credit_balance_get(workspace=workspace)
    return [("Credits", f"{balance.balance} ({balance.available} available)")]
