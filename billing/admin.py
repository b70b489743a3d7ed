"""Billing admin. Plan edits go through a service (catalogue cache invalidation); events,
counters and audits are read-only; failed events are reprocessed through the service."""

from django.contrib import admin, messages

from core.admin_lists import BigTableAdmin, recent_filter

from . import services
from .models import (
    ChargilyEvent,
    CheckoutFulfilment,
    CheckoutSession,
    PaymentTransaction,
    PeriodAudit,
    Plan,
    PlanQuota,
    StripeEvent,
    Subscription,
    UsageCounter,
)

# A workspace by its slug or name, or a personal one by its owner's email (one join each, so a
# search never multiplies rows the way one through the memberships would).
WORKSPACE_SEARCH = ("workspace__slug", "workspace__name", "workspace__personal_owner__email")


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _events_reprocess(modeladmin, request, queryset, *, reprocess, error_class) -> None:
    """Run stored events (Stripe or Chargily) that failed or were never processed, again.

    A failure is recorded on the event row by the service, so it is only counted here.
    """
    status = queryset.model.Status
    done = failed = 0
    for event in queryset.filter(status__in=[status.FAILED, status.RECEIVED]):
        try:
            reprocess(event=event)
            done += 1
        except error_class:
            failed += 1
    modeladmin.message_user(
        request,
        f"Reprocessed {done} event(s); {failed} failed again.",
        messages.INFO if not failed else messages.WARNING,
    )


class PlanQuotaInline(admin.TabularInline):
    model = PlanQuota
    extra = 0


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "name",
        "price_minor",
        "currency",
        "price_dzd_minor",
        "interval",
        "is_public",
        "is_active",
        "rate_limit_per_minute",
    )
    list_filter = ("is_public", "is_active")
    search_fields = ("code", "name", "stripe_price_id")
    inlines = [PlanQuotaInline]

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        services.plan_catalog_invalidate()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        services.plan_catalog_invalidate()


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    """Stripe is the source of truth: change subscriptions in Stripe, the webhook mirrors them."""

    list_display = (
        "workspace",
        "plan",
        "gateway",
        "status",
        "current_period_end",
        "cancel_at_period_end",
        "stripe_subscription_id",
        "replaced_at",
        "stripe_canceled_at",
    )
    list_filter = ("gateway", "status", "plan")
    search_fields = (*WORKSPACE_SEARCH, "stripe_subscription_id", "stripe_customer_id")
    list_select_related = ("workspace", "plan")


class _WebhookEventAdmin(BigTableAdmin, ReadOnlyAdmin):
    """Stored webhook events, newest first on the ``received_at`` index. No filter on ``type``
    (its choices would be a ``SELECT DISTINCT`` over the table); search an exact event id."""

    list_filter = ("status", recent_filter("received_at"))
    ordering = ("-received_at",)
    sortable_by = ("received_at",)
    user_field = ""


@admin.register(StripeEvent)
class StripeEventAdmin(_WebhookEventAdmin):
    list_display = ("stripe_event_id", "type", "status", "attempts", "received_at", "processed_at")
    exact_search_fields = ("stripe_event_id",)
    readonly_fields = (
        "stripe_event_id",
        "type",
        "livemode",
        "status",
        "error",
        "attempts",
        "stripe_created_at",
        "received_at",
        "processed_at",
        "payload",
    )
    actions = ["reprocess"]

    @admin.action(description="Reprocess selected failed events")
    def reprocess(self, request, queryset):
        _events_reprocess(
            self,
            request,
            queryset,
            reprocess=services.stripe_event_reprocess,
            error_class=services.StripeEventProcessingError,
        )


@admin.register(UsageCounter)
class UsageCounterAdmin(ReadOnlyAdmin):
    list_display = ("workspace", "meter", "period", "period_start", "used", "reserved")
    list_filter = ("meter", "period")
    search_fields = (*WORKSPACE_SEARCH,)
    list_select_related = ("workspace",)


@admin.register(PeriodAudit)
class PeriodAuditAdmin(ReadOnlyAdmin):
    list_display = ("workspace", "meter", "period_start", "used", "limit", "plan_code")
    list_filter = ("meter", "plan_code")
    search_fields = (*WORKSPACE_SEARCH,)
    list_select_related = ("workspace",)


@admin.register(CheckoutSession)
class CheckoutSessionAdmin(ReadOnlyAdmin):
    list_display = (
        "workspace",
        "created_by",
        "kind",
        "gateway",
        "mode",
        "amount_minor",
        "currency",
        "status",
        "is_simulated",
        "created_at",
    )
    list_filter = ("gateway", "kind", "status", "is_simulated")
    search_fields = (*WORKSPACE_SEARCH, "checkout_reference")
    list_select_related = ("workspace", "created_by")


@admin.register(CheckoutFulfilment)
class CheckoutFulfilmentAdmin(ReadOnlyAdmin):
    list_display = ("checkout_reference", "kind", "status", "stripe_event_id", "fulfilled_at")
    list_filter = ("kind", "status")
    search_fields = ("checkout_reference",)


@admin.register(PaymentTransaction)
class PaymentTransactionAdmin(ReadOnlyAdmin):
    """Every payment attempt, both gateways. Written only by the checkout and webhook code."""

    list_display = (
        "created_at",
        "workspace",
        "gateway",
        "kind",
        "amount",
        "status",
        "completed_at",
        "reference",
    )
    list_filter = ("gateway", "status", "kind", "currency")
    search_fields = (*WORKSPACE_SEARCH, "reference", "gateway_payment_id")
    list_select_related = ("workspace",)
    date_hierarchy = "created_at"

    @admin.display(description="Amount", ordering="amount_minor")
    def amount(self, obj):
        return obj.amount_display


@admin.register(ChargilyEvent)
class ChargilyEventAdmin(_WebhookEventAdmin):
    list_display = ("chargily_event_id", "type", "status", "attempts", "received_at", "processed_at")
    exact_search_fields = ("chargily_event_id",)
    readonly_fields = (
        "chargily_event_id",
        "type",
        "livemode",
        "status",
        "error",
        "attempts",
        "received_at",
        "processed_at",
        "payload",
    )
    actions = ["reprocess"]

    @admin.action(description="Reprocess selected failed events")
    def reprocess(self, request, queryset):
        _events_reprocess(
            self,
            request,
            queryset,
            reprocess=services.chargily_event_reprocess,
            error_class=services.ChargilyEventProcessingError,
        )
