"""Reads for billing. Tenant-owned reads take ``workspace=`` (an ``accounts.Workspace``, or
anything with its ``pk``).

``plan_for_workspace_get`` is on the proxy's hot path. The catalogue (plans + quotas, a handful
of rows) is cached in process and tagged with a version held in the shared cache; any worker
that changes a plan bumps the version and every process reloads. Which plan a workspace is on
is cached in the shared cache per workspace and deleted whenever one of its subscriptions
changes. Steady state: zero queries; cold workspace entry: one query.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Prefetch, QuerySet, Sum
from django.utils import timezone

from accounts.models import Workspace
from accounts.providers import provider_get
from core import time as periods

from .catalog import DEFAULT_CURRENCY
from .models import (
    CheckoutSession,
    Gateway,
    Meter,
    PaymentTransaction,
    Period,
    Plan,
    PlanQuota,
    StripeEvent,
    Subscription,
    UsageCounter,
)

CATALOG_VERSION_KEY = "billing:catalog-version"
WORKSPACE_PLAN_CACHE_SECONDS = 3600


def workspace_plan_cache_key(workspace_id: int) -> str:
    """The shared-cache entry of a workspace's plan. The prefix changed with the tenant (it was
    ``billing:user-plan:``), so an entry written for a user id is never read as a workspace's."""
    return f"billing:ws-plan:{workspace_id}"


@dataclass(frozen=True)
class _Catalog:
    version: str
    by_id: dict[int, Plan]
    by_code: dict[str, Plan]


_catalog: _Catalog | None = None
_catalog_lock = threading.Lock()


def _catalog_load(version: str) -> _Catalog:
    global _catalog
    with _catalog_lock:
        current = _catalog
        if current is not None and current.version == version:
            return current
        plans = list(Plan.objects.prefetch_related("quotas"))
        _catalog = _Catalog(
            version=version,
            by_id={plan.pk: plan for plan in plans},
            by_code={plan.code: plan for plan in plans},
        )
        return _catalog


def _catalog_for(version: str | None) -> _Catalog:
    if version is None:
        # First use since the shared cache was emptied: publish a version everyone agrees on.
        cache.add(CATALOG_VERSION_KEY, uuid.uuid4().hex, None)
        version = cache.get(CATALOG_VERSION_KEY) or uuid.uuid4().hex
    current = _catalog
    if current is not None and current.version == version:
        return current
    return _catalog_load(version)


def plan_catalog_get() -> _Catalog:
    return _catalog_for(cache.get(CATALOG_VERSION_KEY))


def plan_get_by_code(*, code: str) -> Plan | None:
    """A plan from the in-process catalogue (active or not)."""
    return plan_catalog_get().by_code.get(code)


def plan_for_workspace_get(*, workspace, now: datetime | None = None) -> Plan:
    """The plan whose quotas and limits apply to ``workspace`` right now (the free plan by
    default).

    A subscription set to cancel at period end stops counting at ``current_period_end`` even if
    Stripe's ``customer.subscription.deleted`` arrives late.
    """
    workspace_key = workspace_plan_cache_key(workspace.pk)
    cached = cache.get_many([CATALOG_VERSION_KEY, workspace_key])
    catalog = _catalog_for(cached.get(CATALOG_VERSION_KEY))
    entry = cached.get(workspace_key)
    if entry is None:
        row = (
            Subscription.objects.filter(workspace_id=workspace.pk, status__in=Subscription.ENTITLED_STATUSES)
            .order_by("-created_at", "-pk")
            .values_list("plan_id", "cancel_at_period_end", "current_period_end")
            .first()
        )
        if row is None:
            entry = (None, None)
        else:
            plan_id, cancel_at_period_end, period_end = row
            entry = (plan_id, period_end if cancel_at_period_end else None)
        cache.set(workspace_key, entry, WORKSPACE_PLAN_CACHE_SECONDS)
    return _plan_from_entry(catalog, entry, now)


def plan_from_cached_get(*, version: str | None, entry, now: datetime | None = None) -> Plan | None:
    """``plan_for_workspace_get`` from its two shared-cache values already fetched (the proxy's
    fast lane reads them in its one Redis round trip). None when that needs a query: the entry
    or the version is missing, or this process has not loaded that catalogue version yet."""
    current = _catalog
    if version is None or entry is None or current is None or current.version != version:
        return None
    return _plan_from_entry(current, entry, now)


def _plan_from_entry(catalog: _Catalog, entry, now: datetime | None) -> Plan:
    plan_id, until = entry
    if plan_id is not None and (until is None or (now or timezone.now()) < until):
        plan = catalog.by_id.get(plan_id)
        if plan is not None:
            return plan
    plan = catalog.by_code.get(settings.DEFAULT_PLAN_CODE)
    if plan is None:
        raise ImproperlyConfigured(
            f"The default plan {settings.DEFAULT_PLAN_CODE!r} does not exist: run `manage.py seed_catalog`."
        )
    return plan


@dataclass(frozen=True)
class QuotaRule:
    meter: str
    period: str
    limit: int | None  # None = unlimited, 0 = not included


def plan_quota_get(*, plan: Plan, meter: str) -> QuotaRule:
    """The plan's rule for a meter; a meter the plan does not list is not included (0).

    A plan whose quotas are prefetched (the catalogue's: never modified, replaced when the
    catalogue version moves) keeps its rules by meter, built once: a proxied call asks several
    times, and each ``plan.quotas.all()`` builds a related manager."""
    rules = getattr(plan, "_quota_rules", None)
    if rules is None:
        rules = {
            quota.meter: QuotaRule(meter=quota.meter, period=quota.period, limit=quota.limit)
            for quota in plan.quotas.all()
        }
        if "quotas" in getattr(plan, "_prefetched_objects_cache", {}):
            plan._quota_rules = rules
    return rules.get(meter) or QuotaRule(meter=meter, period=Period.MONTH, limit=0)


def period_bounds(*, period: str, now: datetime) -> tuple[datetime, datetime]:
    if period == Period.DAY:
        return periods.day_start(now), periods.next_day_start(now)
    return periods.month_start(now), periods.next_month_start(now)


@dataclass(frozen=True)
class QuotaStatus:
    meter: str
    period: str
    used: int
    reserved: int
    limit: int | None
    remaining: int | None  # None when unlimited
    reset_at: datetime

    def as_json(self) -> dict:
        """The ``quota`` block clients of the original design expect."""
        return {
            "used": self.used,
            "limit": self.limit,
            "remaining": self.remaining,
            "resetDate": periods.isoformat_z(self.reset_at),
        }


def quota_block(status: QuotaStatus | None) -> dict:
    """The original design's quota block for one meter (all None when the meter is not tracked)."""
    if status is None:
        return {"used": 0, "limit": None, "remaining": None, "resetDate": None}
    return status.as_json()


def quota_status_build(*, rule: QuotaRule, used: int, reserved: int, reset_at: datetime) -> QuotaStatus:
    remaining = None if rule.limit is None else max(0, rule.limit - used - reserved)
    return QuotaStatus(
        meter=rule.meter,
        period=rule.period,
        used=used,
        reserved=reserved,
        limit=rule.limit,
        remaining=remaining,
        reset_at=reset_at,
    )


def quota_status_get(*, workspace, now: datetime | None = None) -> dict[str, QuotaStatus]:
    """Per meter: used, reserved, limit, remaining and reset time for the current periods of the
    workspace (one counter per meter, shared by every member and key)."""
    now = now or timezone.now()
    plan = plan_for_workspace_get(workspace=workspace, now=now)
    rules = {meter: plan_quota_get(plan=plan, meter=meter) for meter in Meter.values}
    starts = {period_bounds(period=rule.period, now=now)[0] for rule in rules.values()}
    counters = {
        (meter, start): (used, reserved)
        for meter, start, used, reserved in UsageCounter.objects.filter(
            workspace_id=workspace.pk, period_start__in=starts
        ).values_list("meter", "period_start", "used", "reserved")
    }
    result = {}
    for meter, rule in rules.items():
        start, end = period_bounds(period=rule.period, now=now)
        used, reserved = counters.get((meter, start), (0, 0))
        result[meter] = quota_status_build(rule=rule, used=used, reserved=reserved, reset_at=end)
    return result


def workspace_for_metadata_get(*, metadata: dict, fallback_id: str = "") -> Workspace | None:
    """The workspace a checkout or subscription's metadata names: ``workspace_id`` first, then
    the legacy ``user_id`` (objects made before workspaces) as that user's personal workspace,
    then ``fallback_id`` (a ``client_reference_id``, a workspace id). None when none exists."""
    metadata = metadata if isinstance(metadata, dict) else {}
    workspace_id = str(metadata.get("workspace_id") or "")
    if workspace_id.isdigit():
        return Workspace.objects.filter(pk=int(workspace_id)).first()
    user_id = str(metadata.get("user_id") or "")
    if user_id.isdigit():
        return Workspace.objects.filter(personal_owner_id=int(user_id)).first()
    fallback_id = str(fallback_id or "")
    return Workspace.objects.filter(pk=int(fallback_id)).first() if fallback_id.isdigit() else None


def workspace_delete_refusal_get(*, workspace) -> str | None:
    """Why ``workspace`` may not be deleted, as far as billing knows (registered with accounts'
    delete guards): a paid plan still in force would keep billing a workspace that is gone; and
    subscriptions and payments are kept for the accounts (their foreign keys PROTECT the
    workspace, so deleting it would fail anyway)."""
    subscription = subscription_get(workspace=workspace)
    if subscription is not None and subscription.plan.is_paid:
        return "An active paid subscription"
    if (
        Subscription.objects.filter(workspace_id=workspace.pk).exists()
        or PaymentTransaction.objects.filter(workspace_id=workspace.pk).exists()
    ):
        return "Its billing history (past subscriptions and payments are kept for accounting)"
    return None


def plan_list_public() -> QuerySet[Plan]:
    return (
        Plan.objects.filter(is_public=True, is_active=True)
        .prefetch_related(Prefetch("quotas", queryset=PlanQuota.objects.order_by("meter")))
        .order_by("sort_order", "price_minor", "code")
    )


def subscription_get(*, workspace) -> Subscription | None:
    """The workspace's current entitled subscription, if any (newest first)."""
    return (
        Subscription.objects.filter(workspace_id=workspace.pk, status__in=Subscription.ENTITLED_STATUSES)
        .select_related("plan")
        .order_by("-created_at", "-pk")
        .first()
    )


def subscription_billing_customer_get(*, workspace) -> str | None:
    """The Stripe customer id of the workspace's newest subscription (the workspace's billing
    account: new checkouts reuse it, the customer portal opens it)."""
    return (
        Subscription.objects.filter(workspace_id=workspace.pk)
        .exclude(stripe_customer_id="")
        .order_by("-created_at", "-pk")
        .values_list("stripe_customer_id", flat=True)
        .first()
    )


def subscription_status_get(*, workspace, now: datetime | None = None) -> dict:
    """``{"tier", "is_active", "expires_at", "gateway"}``: the plan in force, whether a paid
    plan is active, when it stops (None while a Stripe subscription renews itself) and which
    gateway took the payment. The free plan answers ``is_active: false``."""
    now = now or timezone.now()
    plan = plan_for_workspace_get(workspace=workspace, now=now)
    subscription = subscription_get(workspace=workspace) if plan.is_paid else None
    if subscription is None or subscription.plan_id != plan.pk:
        return {"tier": plan.code, "is_active": False, "expires_at": None, "gateway": None}
    expires_at = subscription.current_period_end if subscription.cancel_at_period_end else None
    return {
        "tier": plan.code,
        "is_active": True,
        "expires_at": expires_at,
        "gateway": subscription.gateway,
    }


def _paid_transactions(*, start: datetime, end: datetime, gateway: str | None, kind: str | None):
    rows = PaymentTransaction.objects.filter(
        status=PaymentTransaction.Status.PAID, completed_at__gte=start, completed_at__lt=end
    )
    if gateway:
        rows = rows.filter(gateway=gateway)
    if kind:
        rows = rows.filter(kind=kind)
    return rows


def payment_revenue_get(
    *, start: datetime, end: datetime, gateway: str | None = None, kind: str | None = None
) -> list[tuple[str, int]]:
    """Money received in [start, end) per currency, as ``[(currency, amount_minor)]`` sorted by
    currency (one query). Each paid checkout counts once, whichever gateway took it; amounts
    stay in their own currency (DZD in centimes) for the caller to convert."""
    return list(
        _paid_transactions(start=start, end=end, gateway=gateway, kind=kind)
        .values("currency")
        .annotate(total=Sum("amount_minor"))
        .order_by("currency")
        .values_list("currency", "total")
    )


def payment_revenue_by_plan_get(
    *, start: datetime, end: datetime, gateway: str | None = None
) -> dict[str, dict[str, int]]:
    """Plan payments received in [start, end) as ``{plan code: {currency: amount_minor}}``."""
    result: dict[str, dict[str, int]] = {}
    rows = (
        _paid_transactions(start=start, end=end, gateway=gateway, kind=PaymentTransaction.Kind.PLAN)
        .values("checkout__metadata__plan_code", "currency")
        .annotate(total=Sum("amount_minor"))
        .order_by()
    )
    for row in rows:
        code = row["checkout__metadata__plan_code"] or "unknown"
        bucket = result.setdefault(code, {})
        bucket[row["currency"]] = bucket.get(row["currency"], 0) + (row["total"] or 0)
    return result


def _revenue_add(result: dict[str, dict[str, int]], code: str, currency: str, amount: int) -> None:
    bucket = result.setdefault(code, {})
    bucket[currency] = bucket.get(currency, 0) + amount


def _invoice_decode(payload: dict | None) -> tuple[str, str, str, int]:
    """(invoice id, subscription id, currency, amount paid) of a stored ``invoice.paid`` event.

    The subscription sits at ``invoice.subscription`` in older API versions and at
    ``invoice.parent.subscription_details.subscription`` in recent ones, as an id or an object.
    """
    invoice = ((payload or {}).get("data") or {}).get("object") or {}
    subscription = invoice.get("subscription") or (
        ((invoice.get("parent") or {}).get("subscription_details") or {}).get("subscription")
    )
    if isinstance(subscription, dict):
        subscription = subscription.get("id")
    return (
        invoice.get("id") or str(id(invoice)),
        subscription or "",
        (invoice.get("currency") or "").lower(),
        int(invoice.get("amount_paid") or 0),
    )


def invoice_revenue_by_plan_get(*, start: datetime, end: datetime) -> dict[str, dict[str, int]]:
    """Stripe subscription revenue received in [start, end), as ``{plan code: {currency: minor}}``.

    Paid invoices are the ``invoice.paid`` events we stored (one per invoice, deduplicated by
    invoice id); the offline simulated checkout has no invoices, so its completed subscription
    checkouts count as paid first invoices.
    """
    invoices: dict[str, tuple[str, str, int]] = {}
    events = StripeEvent.objects.filter(
        type="invoice.paid", received_at__gte=start, received_at__lt=end
    ).exclude(status=StripeEvent.Status.FAILED)
    for payload in events.values_list("payload", flat=True):
        invoice_id, subscription, currency, amount = _invoice_decode(payload)
        invoices[invoice_id] = (subscription, currency, amount)
    plan_by_subscription = dict(
        Subscription.objects.filter(
            stripe_subscription_id__in=[s for s, _, _ in invoices.values() if s]
        ).values_list("stripe_subscription_id", "plan__code")
    )
    result: dict[str, dict[str, int]] = {}
    for subscription, currency, amount in invoices.values():
        if amount > 0 and currency:
            _revenue_add(result, plan_by_subscription.get(subscription, "unknown"), currency, amount)
    simulated = (
        CheckoutSession.objects.filter(
            is_simulated=True,
            mode="subscription",
            status=CheckoutSession.Status.COMPLETE,
            updated_at__gte=start,
            updated_at__lt=end,
        )
        .values("metadata", "currency")
        .annotate(total=Sum("amount_minor"))
    )
    for row in simulated:
        code = (row["metadata"] or {}).get("plan_code") or "unknown"
        _revenue_add(result, code, row["currency"], row["total"] or 0)
    return result


def plan_revenue_by_plan_get(*, start: datetime, end: datetime) -> dict[str, dict[str, int]]:
    """All plan revenue received in [start, end), per plan and currency, each payment once:
    Stripe from its invoices (a Stripe checkout's transaction is the same money as its first
    invoice), Chargily from its paid plan transactions. Credit packs are not plan revenue."""
    result = {
        code: dict(amounts) for code, amounts in invoice_revenue_by_plan_get(start=start, end=end).items()
    }
    chargily = payment_revenue_by_plan_get(start=start, end=end, gateway=Gateway.CHARGILY)
    for code, amounts in chargily.items():
        for currency, amount in amounts.items():
            _revenue_add(result, code, currency, amount)
    return result


# --- Pricing page ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PricingTier:
    """One plan at one price: what a ladder lists. ``price_minor`` is in minor units of
    ``currency`` per ``plan.interval``; ``gateway`` is the checkout that takes that price."""

    plan: Plan
    currency: str
    price_minor: int
    gateway: str
    is_highlighted: bool = False

    @property
    def is_paid(self) -> bool:
        return self.price_minor > 0


@dataclass(frozen=True)
class PricingLadder:
    """The plans sold in one currency, cheapest first, with at most one highlighted tier."""

    currency: str
    gateway: str
    tiers: list[PricingTier]

    @property
    def highlighted(self) -> PricingTier | None:
        return next((tier for tier in self.tiers if tier.is_highlighted), None)


@dataclass(frozen=True)
class PlanComparisonRow:
    """One line of the comparison table. ``kind``: ``quota`` (cells are ``PlanQuota`` or None),
    ``rate`` (requests per minute), ``max_tokens`` (int or None) or ``providers`` (names)."""

    kind: str
    label: str
    cells: list


@dataclass(frozen=True)
class PlanComparison:
    plans: list[Plan]
    rows: list[PlanComparisonRow]


@dataclass(frozen=True)
class Pricing:
    ladders: list[PricingLadder]
    comparison: PlanComparison


def _highlight_index(tiers: list[PricingTier]) -> int | None:
    """The middle paid tier (the upper one of two middles), or None when fewer than two paid
    tiers leave nothing to choose between. Plan has no "featured" flag for the operator to set,
    so the middle of the paid ladder is the suggestion."""
    paid = [index for index, tier in enumerate(tiers) if tier.is_paid]
    if len(paid) < 2:
        return None
    return paid[len(paid) // 2]


def _ladder_build(*, currency: str, gateway: str, entries: list[tuple[Plan, int]]) -> PricingLadder:
    entries = sorted(entries, key=lambda entry: (entry[1], entry[0].sort_order, entry[0].code))
    tiers = [
        PricingTier(plan=plan, currency=currency, price_minor=price, gateway=gateway)
        for plan, price in entries
    ]
    highlight = _highlight_index(tiers)
    if highlight is not None:
        tier = tiers[highlight]
        tiers[highlight] = PricingTier(
            plan=tier.plan,
            currency=tier.currency,
            price_minor=tier.price_minor,
            gateway=tier.gateway,
            is_highlighted=True,
        )
    return PricingLadder(currency=currency, gateway=gateway, tiers=tiers)


def pricing_ladder_list(*, plans: list[Plan]) -> list[PricingLadder]:
    """One ladder per currency, each sorted by price: the Stripe prices (``price_minor`` in the
    plan's ``currency``, free plans included) and the Chargily prices in DZD (paid plans that
    have a ``price_dzd_minor``). The default currency's ladder comes first."""
    stripe: dict[str, list[tuple[Plan, int]]] = {}
    dzd: list[tuple[Plan, int]] = []
    for plan in plans:
        stripe.setdefault(plan.currency, []).append((plan, plan.price_minor))
        if plan.is_paid and plan.price_dzd_minor:
            dzd.append((plan, plan.price_dzd_minor))
    ladders = [
        _ladder_build(currency=currency, gateway=Gateway.STRIPE, entries=entries)
        for currency, entries in sorted(
            stripe.items(), key=lambda item: (item[0] != DEFAULT_CURRENCY, item[0])
        )
    ]
    if dzd:
        ladders.append(_ladder_build(currency="dzd", gateway=Gateway.CHARGILY, entries=dzd))
    return ladders


def _plan_providers(plan: Plan) -> list[str]:
    """Provider names a plan routes to, heaviest weight first, then its fallback."""
    weights = sorted(
        ((code, weight) for code, weight in (plan.routing_weights or {}).items() if weight),
        key=lambda item: (-item[1], item[0]),
    )
    codes = [code for code, _ in weights]
    if plan.fallback_provider and plan.fallback_provider not in codes:
        codes.append(plan.fallback_provider)
    return [getattr(provider_get(code), "name", code) for code in codes]


def plan_comparison_get(*, plans: list[Plan]) -> PlanComparison:
    """What each plan includes, one row per meter any plan has a quota for, then the rate limit,
    the answer-size cap and the providers. Uses the prefetched ``quotas`` (no query)."""
    quotas = {plan.pk: {quota.meter: quota for quota in plan.quotas.all()} for plan in plans}
    meters = [meter for meter in Meter if any(meter.value in by_meter for by_meter in quotas.values())]
    rows = [
        PlanComparisonRow(
            kind="quota", label=meter.label, cells=[quotas[plan.pk].get(meter.value) for plan in plans]
        )
        for meter in meters
    ]
    rows.append(
        PlanComparisonRow(
            kind="rate", label="Rate limit", cells=[plan.rate_limit_per_minute for plan in plans]
        )
    )
    rows.append(
        PlanComparisonRow(
            kind="max_tokens", label="Longest answer", cells=[plan.max_tokens_cap for plan in plans]
        )
    )
    rows.append(
        PlanComparisonRow(
            kind="providers", label="Providers", cells=[_plan_providers(plan) for plan in plans]
        )
    )
    return PlanComparison(plans=plans, rows=rows)


def pricing_get() -> Pricing:
    """Everything the pricing page shows, from one read of the public catalogue (two queries:
    plans, then their quotas). Comparison columns follow the first ladder's order."""
    plans = list(plan_list_public())
    ladders = pricing_ladder_list(plans=plans)
    ordered = [tier.plan for ladder in ladders if ladder.gateway == Gateway.STRIPE for tier in ladder.tiers]
    return Pricing(ladders=ladders, comparison=plan_comparison_get(plans=ordered))
