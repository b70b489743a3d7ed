"""Proxy data: prices and routes (operator-editable catalogue), the usage log and its rollups.

``UsageEvent`` is append-only: one row per proxied call, success or failure. Dashboards read
``UsageDailyRollup`` and ``UsageSpendHourly`` (upserted as calls settle) and never scan the raw
log.
"""

import uuid
from decimal import Decimal

from django.db import models
from django.utils import timezone

from core.models import BaseModel, WorkspaceDayMinutes


class ModelPrice(BaseModel):
    """What a provider charges the operator for a model, in USD per million tokens."""

    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=128)
    # USD per 1 000 000 tokens (Decimal, never float).
    input_usd_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    output_usd_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "model"], name="modelprice_provider_model"),
            models.CheckConstraint(
                condition=models.Q(input_usd_per_mtok__gte=0, output_usd_per_mtok__gte=0),
                name="modelprice_non_negative",
            ),
        ]
        ordering = ["provider", "model"]

    def __str__(self):
        return f"{self.provider}/{self.model}"


class ModelRoute(BaseModel):
    """Maps a requested model to the model a provider actually serves.

    ``requested_model="*"`` is the provider's default for models with no route and no price.
    """

    DEFAULT = "*"

    requested_model = models.CharField(max_length=128)
    provider = models.CharField(max_length=32)
    upstream_model = models.CharField(max_length=128)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["requested_model", "provider"], name="modelroute_model_provider")
        ]
        ordering = ["requested_model", "provider"]

    def __str__(self):
        return f"{self.requested_model} @ {self.provider} → {self.upstream_model}"


class UsageEvent(models.Model):
    """One proxied call. Append-only; never updated after insert."""

    class KeySource(models.TextChoices):
        WORKSPACE = "workspace", "Workspace (BYOK)"
        # Calls logged before workspaces existed (the log is append-only: never rewritten).
        PERSONAL = "personal", "Personal (BYOK, before workspaces)"
        GLOBAL = "global", "Global (operator)"
        ENV = "env", "Environment (operator)"
        SANDBOX = "sandbox", "Sandbox"
        NONE = "none", "None"

    # Server-generated per call; also the idempotency key of the settle (credits, rollup).
    call_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The tenant. Indexed by ``usage_workspace_recent``, which starts with it (a second index: a
    # write per call).
    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    # Which key made the call; its creator is the member the call counts for (per-member usage).
    api_key = models.ForeignKey(
        "accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    service = models.CharField(max_length=16)  # "deepseek", "instantly", "router"
    endpoint = models.CharField(max_length=64)
    provider = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=128, blank=True)  # as requested
    upstream_model = models.CharField(max_length=128, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    emails = models.PositiveIntegerField(default=0)
    # Operator cost of this call in USD (0 for BYOK, sandbox and free providers).
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    credits_charged = models.PositiveIntegerField(default=0)  # credit units, when paid by overage
    # The customer-facing charge, whether plan quota or credits paid it (0 for a failed call):
    # credits at the endpoint's ``EndpointCost`` rate, and that in money at the plan's price per
    # credit (``billing.Plan.credit_price_micros``), in millionths of the major unit of
    # ``charge_currency`` (ISO 4217, lower case; empty when the call has no money charge).
    # ``db_default``: raw inserts that predate the charge (bench, generators) stay valid.
    charge_credits = models.PositiveIntegerField(default=0, db_default=0)
    charge_micros = models.PositiveBigIntegerField(default=0, db_default=0)
    charge_currency = models.CharField(max_length=3, blank=True, default="", db_default="")
    status_code = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=32, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    key_source = models.CharField(max_length=16, choices=KeySource.choices, default=KeySource.NONE)
    is_fallback = models.BooleanField(default=False)
    is_budget_fallback = models.BooleanField(default=False)
    is_estimated = models.BooleanField(default=False)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["workspace", "-created_at"], name="usage_workspace_recent"),
            models.Index(fields=["created_at"], name="usage_created"),
            # The admin's search by a customer's X-Request-ID (exact match).
            models.Index(fields=["request_id"], name="usage_request_id"),
        ]

    def __str__(self):
        return f"{self.endpoint} {self.status_code} ({self.call_id})"

    @property
    def charge_display(self) -> str:
        """The charge in money (``0.075 EUR``: two decimals at least, to the micro at most), or
        "" when there is none (a failed call, a plan without a price per credit, an old row)."""
        if not self.charge_micros or not self.charge_currency:
            return ""
        value = (Decimal(self.charge_micros) / 1_000_000).normalize()
        places = max(2, -value.as_tuple().exponent)
        return f"{value:,.{places}f} {self.charge_currency.upper()}"

    @property
    def is_byok(self) -> bool:
        """Served with the workspace's own provider key (or, before workspaces, the user's)."""
        return self.key_source in (self.KeySource.WORKSPACE, self.KeySource.PERSONAL)


class UsageDailyRollup(models.Model):
    """Per (workspace, provider, UTC day) totals, incremented with F()/upsert as calls settle."""

    # Indexed by ``rollup_workspace_provider_day``, which starts with it.
    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    provider = models.CharField(max_length=32)
    day = models.DateField()
    requests = models.PositiveIntegerField(default=0)
    tokens = models.BigIntegerField(default=0)
    emails = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)  # operator USD
    errors = models.PositiveIntegerField(default=0)
    fallbacks = models.PositiveIntegerField(default=0)
    # Credits at the endpoints' rates, whoever paid (``UsageEvent.charge_credits``, summed): the
    # operator dashboard splits revenue between providers by it. ``db_default``: raw upserts
    # that predate it stay valid.
    charge_credits = models.BigIntegerField(default=0, db_default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "provider", "day"], name="rollup_workspace_provider_day"
            )
        ]
        indexes = [models.Index(fields=["day", "provider"], name="rollup_day_provider")]

    def __str__(self):
        return f"{self.workspace_id} {self.provider} {self.day}"


class UsageSpendHourly(models.Model):
    """Per (workspace, UTC hour, key, requested model, charge currency) totals of what calls
    were charged, added to in the same statement that writes each event (``proxy.services``).

    Hourly, so the last 24 hours are exact and days can be cut in the viewer's time zone; the
    spend overview reads only this table. No NULL in the unique key, so the upsert's ``ON
    CONFLICT`` always matches: ``api_key_id`` is 0 for a call without a key, and ``model`` is the
    endpoint when no model was requested (emails).
    """

    # Indexed by ``spend_hourly_row``, which starts with it.
    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    hour = models.DateTimeField()  # the UTC hour's first instant
    # The key's id, or 0 without one. Not a foreign key: a deleted key's spend stays counted.
    api_key_id = models.PositiveBigIntegerField()
    model = models.CharField(max_length=128)  # the requested model, else the endpoint
    charge_currency = models.CharField(max_length=3, blank=True)  # ISO 4217, lower case; "" = none
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    charge_credits = models.BigIntegerField(default=0)  # credits at the endpoints' rates
    # Millionths of the major unit of ``charge_currency`` (UsageEvent.charge_micros, summed).
    charge_micros = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "hour", "api_key_id", "model", "charge_currency"],
                name="spend_hourly_row",
            )
        ]

    def __str__(self):
        return f"{self.workspace_id} {self.hour:%Y-%m-%d %H}h key {self.api_key_id} {self.model}"


class RateLimitedDay(WorkspaceDayMinutes):
    """Minutes of a UTC day in which one of a workspace's keys went past its per-minute rate limit.

    Refused calls are answered before anything is recorded, so they never reach the rollups; this
    is how the operator's abuse list sees them. It is written at the first refusal of each key's
    minute only (``proxy.services.rate_limited_minute_record``): a flood of refused calls costs
    one row update per key per minute, not one per call.
    """

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "day"], name="rate_limited_workspace_day")
        ]
        indexes = [models.Index(fields=["day", "minutes"], name="rate_limited_day_minutes")]


class DailySpend(models.Model):
    """Operator spend per UTC day (global/env keys only): the durable side of the budget counter."""

    day = models.DateField(unique=True)
    spent_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)  # USD
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.day}: {self.spent_usd} USD"
