"""Credits: prepaid packs, a cached balance per workspace (the billing tenant), and the
append-only ledger behind it. Every member of a workspace spends the same credits.

Invariants (enforced by the database where it can):
- ``CreditAccount.balance == sum(LedgerEntry.amount) == sum(CreditLot.remaining)`` for the
  workspace, and ``0 <= held <= balance``;
- a ledger entry is written once and never updated or deleted by application code;
- every entry has a unique idempotency key built from our own ids.

Only ``credits.services`` writes these tables.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from core.models import BaseModel


class CreditPack(BaseModel):
    """A prepaid pack customers can buy (admin-editable catalogue)."""

    code = models.SlugField(max_length=40, unique=True)  # public id, e.g. "pack_100"
    name = models.CharField(max_length=100)
    credits = models.PositiveIntegerField()
    price_minor = models.PositiveIntegerField()  # price in minor units of `currency` (cents)
    currency = models.CharField(max_length=3, default="eur")  # ISO 4217, lower case as Stripe
    # Price for Chargily Pay, in DZD centimes (whole dinars only); empty = not sold in DZD.
    price_dzd_minor = models.PositiveIntegerField(null=True, blank=True)
    # Optional: without it, checkout sends inline price_data built from price_minor/currency.
    stripe_price_id = models.CharField(max_length=100, blank=True)
    is_active = models.BooleanField(default=True)
    display_order = models.PositiveSmallIntegerField(default=0)
    # Purchased credits expire this many days after payment; empty = they never expire.
    expires_after_days = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["display_order", "credits"]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0), name="creditpack_credits_positive"),
        ]

    def __str__(self):
        return f"{self.name} ({self.credits} credits)"


class CreditAccount(BaseModel):
    """The cached balance of one workspace. Changed only by ``credits.services`` under a row lock."""

    workspace = models.OneToOneField(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="credit_account"
    )
    balance = models.BigIntegerField(default=0)  # credits; == sum of the workspace's ledger amounts
    held = models.BigIntegerField(default=0)  # credits reserved by open holds (in-flight calls)
    first_purchase_at = models.DateTimeField(null=True, blank=True)
    # A copy of the enabled ``AutoTopUp.threshold_credits`` (NULL while auto top-up is off), so a
    # debit, which holds this row locked anyway, knows without another query whether to buy more.
    auto_top_up_below = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="creditaccount_balance_gte_0"),
            models.CheckConstraint(condition=Q(held__gte=0), name="creditaccount_held_gte_0"),
            models.CheckConstraint(
                condition=Q(held__lte=F("balance")), name="creditaccount_held_lte_balance"
            ),
        ]

    def __str__(self):
        return f"{self.workspace} — {self.balance} credits"

    @property
    def available(self) -> int:
        return self.balance - self.held


class LedgerEntry(models.Model):
    """One movement of credits. Append-only: corrections are new entries."""

    class Kind(models.TextChoices):
        PURCHASE = "purchase", "Purchase"
        CONSUME = "consume", "Consumption"
        REFUND = "refund", "Refund"
        GRANT = "grant", "Grant (admin)"
        ADJUSTMENT = "adjustment", "Adjustment"
        EXPIRY = "expiry", "Expiry"

    # Indexed by ``ledger_workspace_newest``, which starts with it.
    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="credit_ledger", db_index=False
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = models.BigIntegerField()  # signed credits: + purchase/grant, - consume/refund/expiry
    balance_after = models.BigIntegerField()
    idempotency_key = models.CharField(max_length=200, unique=True)
    # What caused it: "cs_…" checkout session, "ch_…" charge, request id, "admin:<id>".
    reference = models.CharField(max_length=255, blank=True)
    endpoint = models.CharField(max_length=200, blank=True)  # consumptions only
    # Credits a refund should have taken back but could not (balance already spent).
    shortfall = models.PositiveIntegerField(default=0)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["workspace", "-id"], name="ledger_workspace_newest")]
        constraints = [
            models.CheckConstraint(condition=Q(balance_after__gte=0), name="ledger_balance_after_gte_0"),
            models.CheckConstraint(
                condition=(
                    Q(kind__in=["purchase", "grant"], amount__gt=0)
                    | Q(kind__in=["consume", "refund", "expiry"], amount__lte=0)
                    | Q(kind="adjustment")
                ),
                name="ledger_amount_sign_matches_kind",
            ),
        ]

    def __str__(self):
        return f"{self.kind} {self.amount:+d} → {self.balance_after}"

    def save(self, *args, **kwargs):
        # A guard, not a side effect: past entries are never edited.
        if not self._state.adding:
            raise ValueError("Ledger entries are append-only; write a new entry instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Ledger entries are append-only and cannot be deleted.")


class CreditLot(BaseModel):
    """A parcel of credits with its own origin and expiry: every positive movement (a purchase,
    an operator's grant) opens one, every negative one draws from lots in burn order.

    ``sum(remaining)`` over a workspace's lots equals its balance. Lots change only under the
    workspace's ``CreditAccount`` row lock, in the same transaction as the ledger entry that
    moves them; the burn order is promotional lots (earliest expiry first), then paid lots
    (earliest expiry first, then oldest).
    """

    class Kind(models.TextChoices):
        PROMOTIONAL = "promotional", "Promotional"
        PAID = "paid", "Paid"

    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="credit_lots")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    amount = models.BigIntegerField()  # credits the lot opened with
    remaining = models.BigIntegerField()  # credits not yet spent, refunded or expired
    expires_at = models.DateTimeField(null=True, blank=True)  # empty: never expires
    expired_at = models.DateTimeField(null=True, blank=True)  # when expiry took its last credit
    reason = models.CharField(max_length=500, blank=True)
    # The purchase or grant entry that opened it; empty for lots opened from a pre-lot balance.
    source_entry = models.OneToOneField(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="lot"
    )

    class Meta:
        indexes = [
            models.Index(
                fields=["workspace", "kind", "expires_at", "id"],
                name="creditlot_open_burn_order",
                condition=Q(remaining__gt=0),
            ),
            models.Index(
                fields=["expires_at"],
                name="creditlot_open_expiring",
                condition=Q(remaining__gt=0, expires_at__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="creditlot_amount_positive"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0, remaining__lte=F("amount")),
                name="creditlot_remaining_within_amount",
            ),
        ]

    def __str__(self):
        return f"{self.kind} lot {self.remaining}/{self.amount}"


class CreditHold(BaseModel):
    """Credits reserved before a metered call (reserve → settle → release)."""

    class Status(models.TextChoices):
        HELD = "held", "Held"
        SETTLED = "settled", "Settled"
        RELEASED = "released", "Released"

    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="credit_holds")
    amount = models.PositiveIntegerField()  # credits reserved
    reference = models.CharField(max_length=255, blank=True)  # e.g. the proxy request id
    endpoint = models.CharField(max_length=200, blank=True)  # what the held call is for
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.HELD)
    settled_amount = models.PositiveIntegerField(null=True, blank=True)
    ledger_entry = models.ForeignKey(LedgerEntry, null=True, blank=True, on_delete=models.PROTECT)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"], name="credithold_status_created")]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="credithold_amount_positive")]

    def __str__(self):
        return f"hold {self.amount} ({self.status})"


class CreditPurchase(BaseModel):
    """A paid checkout session for a pack: revenue stats and the anchor for refunds."""

    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="credit_purchases"
    )
    pack = models.ForeignKey(CreditPack, null=True, on_delete=models.SET_NULL, related_name="purchases")
    # Stripe's Checkout Session id, or our Chargily reference (billing.CheckoutSession's key).
    checkout_reference = models.CharField(max_length=255, unique=True)
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    credits = models.PositiveIntegerField()
    amount_minor = models.PositiveIntegerField()  # amount paid, minor units of `currency`
    currency = models.CharField(max_length=3)
    # Cumulative credits that refunds asked to take back (taken back + shortfall).
    refunded_credits = models.PositiveIntegerField(default=0)
    refund_shortfall = models.PositiveIntegerField(default=0)  # credits that could not be taken back
    ledger_entry = models.OneToOneField(LedgerEntry, on_delete=models.PROTECT, related_name="purchase")

    def __str__(self):
        return f"{self.workspace} bought {self.credits} credits"


class EndpointCost(BaseModel):
    """Credits charged per call of an endpoint: ``per_call + ceil(per_1000_units * units / 1000)``."""

    class Unit(models.TextChoices):
        NONE = "none", "None (per call only)"
        TOKENS = "tokens", "LLM tokens"
        EMAILS = "emails", "Emails"
        REQUESTS = "requests", "Requests"

    endpoint = models.CharField(max_length=200, unique=True)
    description = models.CharField(max_length=200, blank=True)
    per_call = models.PositiveIntegerField(default=0)  # credits per call
    per_1000_units = models.PositiveIntegerField(default=0)  # credits per 1 000 units
    unit = models.CharField(max_length=10, choices=Unit.choices, default=Unit.NONE)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["endpoint"]

    def __str__(self):
        return self.endpoint

    def cost_for(self, units: int = 0) -> int:
        """Integer credits for one call using ``units`` units, rounded up."""
        units = max(int(units or 0), 0)
        return self.per_call + -(-(self.per_1000_units * units) // 1000)


class UpsellEvent(models.Model):
    """A view of an upsell surface or a click on a Buy button, for conversion stats."""

    class Kind(models.TextChoices):
        VIEW = "view", "Credits page view"
        MODAL_VIEW = "modal_view", "Low-balance modal view"
        CLICK = "click", "Buy click"

    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="upsell_events"
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    pack = models.ForeignKey(CreditPack, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["kind", "created_at"], name="upsell_kind_created")]

    def __str__(self):
        return f"{self.kind} in {self.workspace_id}"


class AutoTopUp(BaseModel):
    """A workspace's opt-in to buy ``pack`` off-session when its available balance falls below
    ``threshold_credits``, at most ``max_per_month`` times a calendar month (UTC). A failed
    payment turns it off (``disabled_reason``) until a member turns it on again.

    Changed only by ``credits.services.auto_top_up``, which keeps
    ``CreditAccount.auto_top_up_below`` in step under the account's row lock.
    """

    workspace = models.OneToOneField(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="auto_top_up"
    )
    is_enabled = models.BooleanField(default=False)
    threshold_credits = models.PositiveBigIntegerField(default=0)  # credits, not money
    pack = models.ForeignKey(CreditPack, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    max_per_month = models.PositiveSmallIntegerField(default=3)
    # The card saved by a Stripe pack checkout (``setup_future_usage=off_session``), found from
    # that purchase's PaymentIntent on the first top-up; cleared when auto top-up is turned on
    # again so the newest card is used.
    stripe_customer_id = models.CharField(max_length=255, blank=True)
    stripe_payment_method_id = models.CharField(max_length=255, blank=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    updated_by = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(max_per_month__gte=1), name="autotopup_max_per_month_gte_1"),
            models.CheckConstraint(
                condition=Q(is_enabled=False) | Q(pack__isnull=False), name="autotopup_enabled_has_pack"
            ),
        ]

    def __str__(self):
        state = "on" if self.is_enabled else "off"
        return f"auto top-up {state} for {self.workspace_id} below {self.threshold_credits}"


class AutoTopUpAttempt(BaseModel):
    """One off-session purchase attempt. ``(workspace, month, number)`` is unique and numbers
    count up from 1 within a UTC month, so the attempts of a month are counted in the database
    (under the ``AutoTopUp`` row lock) and each has its own Stripe idempotency key: a retried
    task resumes its pending attempt and buys at most once."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="+")
    month = models.DateField()  # the first day of the UTC month
    number = models.PositiveSmallIntegerField()
    idempotency_key = models.CharField(max_length=100, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    pack = models.ForeignKey(CreditPack, null=True, on_delete=models.SET_NULL, related_name="+")
    credits = models.PositiveIntegerField()
    amount_minor = models.PositiveIntegerField()  # minor units of `currency`
    currency = models.CharField(max_length=3)
    payment_reference = models.CharField(max_length=255, blank=True)  # billing's PaymentTransaction
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True)
    error_code = models.CharField(max_length=100, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "month", "number"], name="autotopupattempt_one_number"
            ),
        ]

    def __str__(self):
        return f"auto top-up {self.workspace_id} {self.month:%Y-%m} #{self.number} ({self.status})"
