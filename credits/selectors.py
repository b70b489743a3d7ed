"""Reads for credits. Workspace-owned reads take ``workspace=`` (the billing tenant)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from django.conf import settings
from django.db.models import Count, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import ngettext

from billing.models import PaymentTransaction
from billing.receipts import RECEIPT_FIELDS, PaymentReceipt, payment_receipt_get
from core.money import ZERO_DECIMAL_CURRENCIES, minor_to_decimal, money_major_format

from .models import (
    AutoTopUp,
    AutoTopUpAttempt,
    CreditAccount,
    CreditPack,
    CreditPurchase,
    EndpointCost,
    LedgerEntry,
    UpsellEvent,
)


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
    tie goes to the bigger pack). A currency with a single pack has no badge: there is nothing
    to be the better value than. ``price(pack)`` gives ``(currency, minor units)`` or None."""
    best: dict[str, tuple[Fraction, int, str]] = {}
    priced: dict[str, int] = {}
    for pack in packs:
        price_of_pack = price(pack)
        if price_of_pack is None:
            continue
        currency, amount_minor = price_of_pack
        priced[currency] = priced.get(currency, 0) + 1
        key = (Fraction(amount_minor, pack.credits), -pack.credits, pack.code)
        if currency not in best or key < best[currency]:
            best[currency] = key
    return {code for currency, (_, _, code) in best.items() if priced[currency] > 1}


def _price_per_credit(amount_minor: int, currency: str, credits: int) -> Decimal:
    """Major units per credit, to the tenth of a cent (``0.139``), two decimals when exact."""
    value = (minor_to_decimal(amount_minor, currency) / credits).quantize(Decimal("0.001"), ROUND_HALF_UP)
    cents = value.quantize(Decimal("0.01"))
    return cents if cents == value else value


def _price_per_credit_text(value: Decimal, currency: str) -> str:
    """A price per credit as pages write money in the reader's language (``0.10 EUR``,
    ``0,10 €``; ``core.money.money_major_format``). A price with a tenth of a cent (``0.139``)
    keeps its third decimal: rounded to the cent, two packs could read the same while the badge
    says one is cheaper. Pages only: the API's ``price_per_credit`` is a decimal string."""
    places = 0 if currency.lower() in ZERO_DECIMAL_CURRENCIES else 2
    if value != value.quantize(Decimal(1).scaleb(-places)):
        places = 3
    return money_major_format(value, currency, places=places)


@dataclass(frozen=True)
class CreditPackOffer:
    """A pack as the pages sell it. ``is_best_value`` is computed (lowest price per credit in
    the pack's currency), never stored, so no price edit can leave the badge on a pack that is
    no longer the cheapest per credit. The ``*_dzd`` fields: the Chargily price."""

    pack: CreditPack
    price_per_credit: Decimal  # major units of pack.currency
    is_best_value: bool
    price_dzd_per_credit: Decimal | None  # DZD; None when the pack is not sold in DZD
    is_best_value_dzd: bool

    @property
    def price_per_credit_text(self) -> str:
        return _price_per_credit_text(self.price_per_credit, self.pack.currency)

    @property
    def price_dzd_per_credit_text(self) -> str:
        if self.price_dzd_per_credit is None:
            return ""
        return _price_per_credit_text(self.price_dzd_per_credit, "dzd")


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
    Chargily Pay price in DZD centimes, null when the pack is not sold in DZD.
    ``price_per_credit``: major units of ``currency`` per credit as a decimal string (``"0.19"``,
    ``"0.139"``: to the tenth of a cent). ``best_value``: the lowest price per credit in the pack's
    currency, computed (see ``CreditPackOffer``)."""
    return [
        {
            "id": offer.pack.code,
            "name": offer.pack.name,
            "credits": offer.pack.credits,
            "price_minor": offer.pack.price_minor,
            "currency": offer.pack.currency,
            "price_dzd_minor": offer.pack.price_dzd_minor,
            "price_per_credit": str(offer.price_per_credit),
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


def _unit_noun(unit: str, count: int) -> str:
    """What ``count`` units of an endpoint's ``unit`` are called, in the reader's language (the
    rows are built per request, so the active language applies)."""
    if unit == EndpointCost.Unit.NONE:
        return ngettext("call", "calls", count)
    if unit == EndpointCost.Unit.TOKENS:
        return ngettext("token", "tokens", count)
    if unit == EndpointCost.Unit.EMAILS:
        return ngettext("email", "emails", count)
    if unit == EndpointCost.Unit.REQUESTS:
        return ngettext("request", "requests", count)
    return ngettext("unit", "units", count)


# The description's ", per 1 000 tokens" style suffix: the price column says it already.
_PRICE_SUFFIX = re.compile(r",\s*per\s.*$", re.IGNORECASE)


@dataclass(frozen=True)
class EndpointPrice:
    """One row of "what a credit buys": an endpoint's price and what ``budget`` credits buy.

    ``per_call`` is charged per ``call_noun`` (a call, or the email / request the call is),
    ``per_1000_units`` per 1 000 ``unit_plural``. ``buys`` is how many ``buys_noun`` the budget
    pays for (None: the endpoint is free); ``buys_is_approximate`` when each call rounds its
    unit cost up, so many small calls buy a little less; ``buys_in_one_call`` when a per-call fee
    comes on top, so the figure holds for a single call."""

    endpoint: str
    name: str
    per_call: int
    per_1000_units: int
    call_noun: str
    unit_plural: str
    budget: int
    buys: int | None
    buys_noun: str
    buys_is_approximate: bool
    buys_in_one_call: bool

    @property
    def is_free(self) -> bool:
        return self.buys is None


def _endpoint_price(cost: EndpointCost, *, budget: int) -> EndpointPrice:
    # A per-call price on an email or request endpoint is a price per email / request.
    per_item = cost.unit != EndpointCost.Unit.TOKENS and not cost.per_1000_units
    call_unit = cost.unit if per_item else EndpointCost.Unit.NONE
    call_noun = _unit_noun(call_unit, 1)
    name = _PRICE_SUFFIX.sub("", cost.description).strip() or cost.endpoint
    buys: int | None = None
    buys_noun, approximate, in_one_call = _unit_noun(cost.unit, 2), False, False
    if cost.per_1000_units:
        buys = max(budget - cost.per_call, 0) * 1000 // cost.per_1000_units
        approximate, in_one_call = True, cost.per_call > 0
        buys_noun = _unit_noun(cost.unit, buys)
    elif cost.per_call:
        buys = budget // cost.per_call
        buys_noun = _unit_noun(call_unit, buys)
    return EndpointPrice(
        endpoint=cost.endpoint,
        name=name,
        per_call=cost.per_call,
        per_1000_units=cost.per_1000_units,
        call_noun=call_noun,
        unit_plural=_unit_noun(cost.unit, 1000),
        budget=budget,
        buys=buys,
        buys_noun=buys_noun,
        buys_is_approximate=approximate,
        buys_in_one_call=in_one_call,
    )


def endpoint_price_list(*, budget: int = 100) -> list[EndpointPrice]:
    """The active endpoint costs as the credits page explains them (one query). Read on the
    credits page only, so not cached: an edit in the admin shows on the next view."""
    return [_endpoint_price(cost, budget=budget) for cost in EndpointCost.objects.filter(is_active=True)]


@dataclass(frozen=True)
class CreditHistoryRow:
    entry: LedgerEntry
    receipt: PaymentReceipt | None  # purchases only, when a page for the payment is known


@dataclass(frozen=True)
class AutoTopUpSettings:
    is_enabled: bool
    pack_code: str | None
    threshold_credits: int | None
    max_per_month: int
    used_this_month: int  # top-ups bought (or in flight) this UTC month
    disabled_reason: str  # why a failure turned it off ("" otherwise)
    last_failure_at: datetime | None
    has_saved_card: bool  # a pack was bought by card through Stripe (needed to turn it on)


def credit_history_list(*, workspace, limit: int = 50) -> list[CreditHistoryRow]:
    """The workspace's newest ledger entries, each purchase with its receipt link: one query,
    two more when the page holds purchases (their checkout references, then the payments)."""
    entries = list(credit_ledger_list(workspace=workspace)[:limit])
    purchase_ids = [entry.pk for entry in entries if entry.kind == LedgerEntry.Kind.PURCHASE]
    receipts: dict[int, PaymentReceipt] = {}
    if purchase_ids:
        references = dict(
            CreditPurchase.objects.filter(workspace=workspace, ledger_entry_id__in=purchase_ids).values_list(
                "checkout_reference", "ledger_entry_id"
            )
        )
        payments = PaymentTransaction.objects.filter(
            workspace=workspace, reference__in=list(references)
        ).values("reference", "checkout__workspace_id", *RECEIPT_FIELDS)
        for payment in payments:
            if payment["checkout__workspace_id"] not in (None, workspace.pk):
                continue  # a checkout of another workspace's is never linked from this page
            receipt = payment_receipt_get(payment)
            if receipt is not None:
                receipts[references[payment["reference"]]] = receipt
    return [CreditHistoryRow(entry=entry, receipt=receipts.get(entry.pk)) for entry in entries]


def auto_top_up_get(*, workspace) -> AutoTopUpSettings:
    """The workspace's auto top-up as the page and the API show it (defaults when never set)."""
    row = AutoTopUp.objects.select_related("pack").filter(workspace=workspace).first()
    month_start = timezone.now().date().replace(day=1)
    used = (
        AutoTopUpAttempt.objects.filter(workspace=workspace, month=month_start)
        .exclude(status=AutoTopUpAttempt.Status.FAILED)
        .count()
        if row is not None
        else 0
    )
    has_card = CreditPurchase.objects.filter(
        workspace=workspace, stripe_payment_intent_id__startswith="pi_"
    ).exists()
    if row is None:
        return AutoTopUpSettings(
            is_enabled=False,
            pack_code=None,
            threshold_credits=None,
            max_per_month=3,
            used_this_month=0,
            disabled_reason="",
            last_failure_at=None,
            has_saved_card=has_card,
        )
    return AutoTopUpSettings(
        is_enabled=row.is_enabled,
        pack_code=row.pack.code if row.pack_id else None,
        threshold_credits=row.threshold_credits or None,
        max_per_month=row.max_per_month,
        used_this_month=used,
        disabled_reason=row.disabled_reason,
        last_failure_at=row.last_failure_at,
        has_saved_card=has_card,
    )


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
