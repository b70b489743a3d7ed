"""Billing data: the plan catalogue, usage counters per period, and our own mirror of the
Stripe objects we act on (events, subscriptions, checkout sessions).

Invariants held by the database, not by Python:
- one usage counter per (workspace, meter, period start); ``used`` and ``reserved`` never
  negative;
- one stored event per Stripe event id; one fulfilment per Checkout Session id;
- at most one live (entitled) subscription per workspace;
- one audit row per closed counter; one alert per (workspace, meter, period, threshold).

The tenant is the workspace (``accounts.Workspace``): every member's calls count against its
counters, and its plan and payments are the workspace's, whoever paid.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.models import BaseModel
from core.money import format_minor


class Gateway(models.TextChoices):
    """Who took the money. Fulfilment is the same whichever gateway it was."""

    STRIPE = "stripe", "Stripe"
    CHARGILY = "chargily", "Chargily Pay"


class Meter(models.TextChoices):
    """What a quota counts. Extensible: add a value and give plans a PlanQuota for it."""

    LLM_TOKENS = "llm_tokens", "LLM tokens"
    EMAILS = "emails", "Emails"
    REQUESTS = "requests", "Requests (messages)"


class Period(models.TextChoices):
    DAY = "day", "Day (UTC)"
    MONTH = "month", "Month (UTC)"


class Plan(BaseModel):
    """A subscription plan. Plans are data: the operator edits them in the admin."""

    class Interval(models.TextChoices):
        MONTH = "month", "Monthly"
        YEAR = "year", "Yearly"

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    price_minor = models.PositiveIntegerField(default=0)  # integer minor units of `currency`
    currency = models.CharField(max_length=3, default="eur")  # ISO 4217, lower case (Stripe)
    # Price for Chargily Pay, in DZD centimes (ISO minor units: 1 590 DZD = 159000); whole
    # dinars only, since Chargily charges whole DZD. Empty = not sold in DZD.
    price_dzd_minor = models.PositiveIntegerField(null=True, blank=True)
    interval = models.CharField(max_length=8, choices=Interval.choices, default=Interval.MONTH)
    # Without it, checkout sends inline price_data built from price_minor/currency/interval.
    stripe_price_id = models.CharField(max_length=100, blank=True)
    is_public = models.BooleanField(default=True)
    is_active = models.BooleanField(default=True)
    rate_limit_per_minute = models.PositiveIntegerField(default=5)
    # Provider -> weight, e.g. {"groq": 85, "openrouter": 15}; read by the proxy router.
    routing_weights = models.JSONField(default=dict, blank=True)
    fallback_provider = models.CharField(max_length=32, blank=True)
    # LLM reservations: the cap used when a request has no max_tokens, and the hard ceiling.
    default_max_tokens = models.PositiveIntegerField(default=1024)
    max_tokens_cap = models.PositiveIntegerField(null=True, blank=True)
    sort_order = models.PositiveIntegerField(default=0)
    # What one credit is worth to a customer on this plan, in millionths of the major unit of
    # ``currency`` (0.01 EUR = 10 000): the money side of every call's customer-facing charge
    # (credits at the endpoint's ``EndpointCost`` rate × this), so operators set their markup
    # here. 0 = the list price per credit of the smallest active credit pack in ``currency``
    # (what a customer pays for credits without a volume discount: the price a pay-as-you-go
    # customer recognises, and the highest per-credit price, so money limits err on the safe
    # side); no such pack: calls are charged in credits only (0 money).
    credit_price_micros = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "price_minor", "code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[a-z]{3}$"), name="plan_currency_lower_iso"
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.code})"

    @property
    def is_paid(self) -> bool:
        return self.price_minor > 0

    @property
    def price_display(self) -> str:
        return format_minor(self.price_minor, self.currency)


class PlanQuota(models.Model):
    """A plan's allowance for one meter per period. ``limit`` None = unlimited, 0 = not included."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="quotas")
    meter = models.CharField(max_length=32, choices=Meter.choices)
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.MONTH)
    limit = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["plan", "meter"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "meter"], name="planquota_one_per_meter"),
            models.CheckConstraint(
                condition=Q(limit__isnull=True) | Q(limit__gte=0), name="planquota_limit_gte_0"
            ),
        ]

    def __str__(self):
        return f"{self.plan.code}: {self.meter}/{self.period} = {self.limit}"


class UsageCounter(models.Model):
    """Usage of one meter by one workspace in one period. Never zeroed: a new period is a new row.

    ``reserved`` holds in-flight reservations; reserve is one conditional UPDATE
    (``used + reserved + n <= limit``), so concurrent callers cannot overshoot the limit.
    """

    # Indexed by ``usagecounter_one_per_period``, which starts with it.
    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    meter = models.CharField(max_length=32, choices=Meter.choices)
    period = models.CharField(max_length=8, choices=Period.choices)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    used = models.BigIntegerField(default=0)
    reserved = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "meter", "period_start"], name="usagecounter_one_per_period"
            ),
            models.CheckConstraint(condition=Q(used__gte=0), name="usagecounter_used_gte_0"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="usagecounter_reserved_gte_0"),
        ]
        indexes = [models.Index(fields=["period_end"], name="usagecounter_period_end")]

    def __str__(self):
        return f"{self.workspace_id} {self.meter} {self.period_start:%Y-%m-%d}: {self.used}+{self.reserved}"


class QuotaReservation(models.Model):
    """Units held on a counter for one in-flight call, until settled or released (once)."""

    class Status(models.TextChoices):
        HELD = "held", "Held"
        SETTLED = "settled", "Settled"
        RELEASED = "released", "Released"

    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="+")
    meter = models.CharField(max_length=32, choices=Meter.choices)
    counter = models.ForeignKey(UsageCounter, on_delete=models.CASCADE, related_name="reservations")
    amount = models.BigIntegerField()
    actual = models.BigIntegerField(null=True, blank=True)  # what the caller reported at settle
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.HELD)
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="quotareservation_amount_gte_0"),
        ]
        indexes = [
            models.Index(fields=["created_at"], condition=Q(status="held"), name="quotareservation_held_age")
        ]

    def __str__(self):
        return f"{self.meter} {self.amount} ({self.status})"


class KeyUsageCounter(models.Model):
    """Usage of one API key's limit (unit × window) in one period: the key's own spend control,
    besides the workspace's plan quota — or, with ``membership`` instead of ``api_key``, of a
    member's monthly cap over every key they created. ``money`` counts micros (millionths of the major unit of
    the workspace plan's currency; the key's limit is set in minor units and converted).
    ``period_start`` is the UTC day or month start, or the epoch for the ``total`` window (one
    row forever). Reserved and settled like ``UsageCounter``
    (``billing.services.key_limits``), so concurrent calls can never pass the limit."""

    class Unit(models.TextChoices):
        REQUESTS = "requests", "Requests"
        TOKENS = "tokens", "Tokens"
        CREDITS = "credits", "Credits"  # the calls' charge in credits
        MONEY = "money", "Money"  # the calls' charge, in millionths of the plan currency's major unit

    class Window(models.TextChoices):
        DAY = "day", "Day (UTC)"
        MONTH = "month", "Month (UTC)"
        TOTAL = "total", "Total (never resets)"

    # The owner: a key (its own limits) or a membership (the member's cap over all their keys).
    api_key = models.ForeignKey(
        "accounts.ApiKey", on_delete=models.CASCADE, related_name="+", db_index=False, null=True, blank=True
    )
    membership = models.ForeignKey(
        "accounts.Membership",
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        null=True,
        blank=True,
    )
    unit = models.CharField(max_length=16, choices=Unit.choices)
    window = models.CharField(max_length=8, choices=Window.choices)
    period_start = models.DateTimeField()
    used = models.BigIntegerField(default=0)
    reserved = models.BigIntegerField(default=0)
    # The limit the last reservation was checked against, in the counter's units (money: micros),
    # so a settle can say how close the key is to it without reading the key.
    limit_amount = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["api_key", "unit", "window", "period_start"],
                condition=Q(api_key__isnull=False),
                name="keyusagecounter_one_per_period",
            ),
            models.UniqueConstraint(
                fields=["membership", "unit", "window", "period_start"],
                condition=Q(membership__isnull=False),
                name="keyusagecounter_member_one_per_period",
            ),
            models.CheckConstraint(
                condition=Q(api_key__isnull=False, membership__isnull=True)
                | Q(api_key__isnull=True, membership__isnull=False),
                name="keyusagecounter_one_owner",
            ),
            models.CheckConstraint(condition=Q(used__gte=0), name="keyusagecounter_used_gte_0"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="keyusagecounter_reserved_gte_0"),
        ]

    def __str__(self):
        owner = f"key {self.api_key_id}" if self.api_key_id else f"member {self.membership_id}"
        return f"{owner} {self.unit}/{self.window}: {self.used}+{self.reserved}"


class KeyUsageHold(models.Model):
    """Units held on a key counter for one in-flight call, until settled or released (once);
    holds older than ``STALE_RESERVATION_SECONDS`` are released by the sweep."""

    Status = QuotaReservation.Status

    counter = models.ForeignKey(KeyUsageCounter, on_delete=models.CASCADE, related_name="holds")
    amount = models.BigIntegerField()
    actual = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(
        max_length=10, choices=QuotaReservation.Status.choices, default=QuotaReservation.Status.HELD
    )
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gte=0), name="keyusagehold_amount_gte_0")]
        indexes = [
            models.Index(fields=["created_at"], condition=Q(status="held"), name="keyusagehold_held_age")
        ]

    def __str__(self):
        return f"key hold {self.amount} ({self.status})"


class PeriodAudit(models.Model):
    """What a counter ended its period at; written once by the period rollover."""

    counter = models.OneToOneField(UsageCounter, on_delete=models.CASCADE, related_name="audit")
    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="+")
    meter = models.CharField(max_length=32, choices=Meter.choices)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    used = models.BigIntegerField()
    limit = models.BigIntegerField(null=True, blank=True)  # the plan's limit when audited
    plan_code = models.CharField(max_length=40)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-period_start", "workspace_id", "meter"]

    def __str__(self):
        return f"{self.workspace_id} {self.meter} {self.period_start:%Y-%m-%d}: {self.used}/{self.limit}"


class Subscription(BaseModel):
    """Our mirror of one Stripe subscription of a workspace.

    ``stripe_event_at`` is the ``created`` time of the newest Stripe event applied to the row:
    an older event arriving late is discarded instead of overwriting a newer state.
    """

    class Status(models.TextChoices):
        INCOMPLETE = "incomplete", "Incomplete"
        INCOMPLETE_EXPIRED = "incomplete_expired", "Incomplete (expired)"
        TRIALING = "trialing", "Trialing"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Past due"
        UNPAID = "unpaid", "Unpaid"
        PAUSED = "paused", "Paused"
        CANCELED = "canceled", "Canceled"

    # Statuses that keep the paid plan (past_due: Stripe is still retrying the payment).
    ENTITLED_STATUSES = (Status.ACTIVE, Status.TRIALING, Status.PAST_DUE)

    # Chargily has no recurring billing: its rows are one paid period each
    # (``stripe_subscription_id`` = "chargily:<our reference>", cancel_at_period_end=True).
    gateway = models.CharField(max_length=10, choices=Gateway.choices, default=Gateway.STRIPE)
    renewal_reminder_sent_at = models.DateTimeField(null=True, blank=True)  # Chargily: once per row

    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.PROTECT, related_name="subscriptions"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.INCOMPLETE)
    stripe_customer_id = models.CharField(max_length=100, blank=True)
    stripe_subscription_id = models.CharField(max_length=100, unique=True)
    # The checkout that started it: Stripe's Checkout Session id, or our Chargily reference.
    checkout_reference = models.CharField(max_length=255, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    ended_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    stripe_event_at = models.DateTimeField(null=True, blank=True)
    # A newer paid checkout replaced this one (``billing.subscriptions``): it was ended here,
    # and for Stripe canceled there too, once ``stripe_canceled_at`` is set.
    replaced_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    replaced_at = models.DateTimeField(null=True, blank=True)
    stripe_canceled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["workspace", "status"], name="subscription_workspace_status"),
            models.Index(
                fields=["replaced_at"],
                condition=Q(replaced_at__isnull=False, stripe_canceled_at__isnull=True, gateway="stripe"),
                name="subscription_cancel_pending",
            ),
        ]
        constraints = [
            # One live subscription per customer: a second one would bill twice.
            models.UniqueConstraint(
                fields=["workspace"],
                condition=Q(status__in=["active", "trialing", "past_due"]),
                name="subscription_one_live_per_workspace",
            ),
        ]

    def __str__(self):
        return f"{self.workspace_id} {self.plan.code} {self.status}"


class StripeEvent(models.Model):
    """Every webhook event, stored before it is acted on. The event id is unique."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"

    stripe_event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    livemode = models.BooleanField(default=False)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    stripe_created_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self):
        return f"{self.stripe_event_id} {self.type} ({self.status})"


class CheckoutSession(BaseModel):
    """A checkout we started (Stripe or simulated): which workspace pays for what, who opened it,
    and where to return.

    For the simulated checkout this row *is* the session: the page at
    ``/billing/simulated-checkout/<checkout_reference>/`` reads it.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        COMPLETE = "complete", "Complete"
        CANCELED = "canceled", "Canceled"
        PAYMENT_FAILED = "payment_failed", "Payment failed"

    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="checkout_sessions"
    )
    # The member who opened it (empty for rows from before workspaces, or once they are gone):
    # a first plan's default key is created in their name, its one-time link emailed to them.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=40)
    gateway = models.CharField(max_length=10, choices=Gateway.choices, default=Gateway.STRIPE)
    mode = models.CharField(max_length=20)  # "subscription" | "payment"
    line_item = models.JSONField()
    metadata = models.JSONField(default=dict)
    amount_minor = models.PositiveIntegerField(default=0)  # minor units of `currency`
    currency = models.CharField(max_length=3, default="eur")
    description = models.CharField(max_length=200, blank=True)
    success_url = models.URLField(max_length=2000)
    cancel_url = models.URLField(max_length=2000)
    is_simulated = models.BooleanField(default=False)
    # The fulfilment key: Stripe's Checkout Session id, or for Chargily our own reference
    # ("chg_…", sent in the checkout metadata) — so one payment fulfils once, whatever the gateway.
    checkout_reference = models.CharField(max_length=255, unique=True, null=True, blank=True)
    gateway_checkout_id = models.CharField(max_length=255, blank=True)  # Chargily's checkout id
    checkout_url = models.URLField(max_length=2000, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)

    def __str__(self):
        return f"{self.kind} {self.checkout_reference} ({self.status})"

    @property
    def amount_display(self) -> str:
        return format_minor(self.amount_minor, self.currency)


class CheckoutFulfilment(models.Model):
    """Exactly-once guard for a paid Checkout Session, whichever event (or delivery) comes first."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        FULFILLED = "fulfilled", "Fulfilled"
        FAILED = "failed", "Payment failed"

    checkout_reference = models.CharField(max_length=255, unique=True)  # as CheckoutSession's
    kind = models.CharField(max_length=40)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    stripe_event_id = models.CharField(max_length=255, blank=True)  # the event that fulfilled it
    created_at = models.DateTimeField(auto_now_add=True)
    fulfilled_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.kind} {self.checkout_reference} ({self.status})"


class ChargilyEvent(models.Model):
    """Every verified Chargily webhook event, stored before it is acted on (unique event id).

    A separate table from StripeEvent: the two gateways' ids, payloads and retry rules differ,
    and the Stripe rows are read as Stripe events elsewhere.
    """

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"

    chargily_event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    livemode = models.BooleanField(default=False)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self):
        return f"{self.chargily_event_id} {self.type} ({self.status})"


class PaymentTransaction(BaseModel):
    """One payment attempt through either gateway, from checkout start to its outcome.

    ``reference`` is the fulfilment key (see CheckoutSession). The status only moves forward
    from ``pending``; a ``paid`` row is never changed again. Revenue reads paid rows.
    """

    class Kind(models.TextChoices):
        PLAN = "plan", "Plan"
        CREDIT_PACK = "credit_pack", "Credit pack"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PAID = "paid", "Paid"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"
        CANCELED = "canceled", "Canceled"

    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.PROTECT, related_name="payment_transactions"
    )
    gateway = models.CharField(max_length=10, choices=Gateway.choices)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    reference = models.CharField(max_length=255, unique=True)
    checkout = models.ForeignKey(
        CheckoutSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="transactions"
    )
    gateway_payment_id = models.CharField(max_length=255, blank=True)  # Chargily checkout / Stripe PI
    amount_minor = models.PositiveIntegerField()  # minor units of `currency` (DZD: centimes)
    currency = models.CharField(max_length=3)  # ISO 4217, lower case
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    completed_at = models.DateTimeField(null=True, blank=True)  # when it became paid/failed/expired
    # The gateway's receipt for a paid row (Stripe: the charge's ``receipt_url``), when known.
    receipt_url = models.URLField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "completed_at"], name="paymenttx_status_completed"),
            models.Index(fields=["workspace", "-created_at"], name="paymenttx_workspace_created"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[a-z]{3}$"), name="paymenttx_currency_lower_iso"
            ),
        ]

    def __str__(self):
        return f"{self.gateway} {self.reference} {self.amount_minor} {self.currency} ({self.status})"

    @property
    def amount_display(self) -> str:
        return format_minor(self.amount_minor, self.currency)
