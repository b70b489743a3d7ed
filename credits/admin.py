"""Credits admin: the catalogue is editable; balances, ledger and holds are read-only and
change only through services (the "grant credits" form, the reconciliation view). Credits
belong to workspaces; an email in a search box finds the owner's personal workspace."""

import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from accounts.models import Workspace
from core.admin_lists import BigTableAdmin
from core.exceptions import ApiError

from .models import (
    AutoTopUp,
    AutoTopUpAttempt,
    CreditAccount,
    CreditHold,
    CreditLot,
    CreditPack,
    CreditPurchase,
    EndpointCost,
    LedgerEntry,
    UpsellEvent,
)
from .selectors import credit_conversion_stats
from .services import credit_grant, credit_ledger_reconcile


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(CreditPack)
class CreditPackAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "name",
        "credits",
        "price_minor",
        "currency",
        "is_active",
        "display_order",
    )
    list_editable = ("is_active", "display_order")
    list_filter = ("is_active",)


@admin.register(EndpointCost)
class EndpointCostAdmin(admin.ModelAdmin):
    list_display = ("endpoint", "per_call", "per_1000_units", "unit", "is_active", "description")
    list_editable = ("per_call", "per_1000_units", "is_active")
    list_filter = ("is_active", "unit")
    search_fields = ("endpoint",)


class ShortfallFilter(admin.SimpleListFilter):
    title = "refund shortfall"
    parameter_name = "shortfall"

    def lookups(self, request, model_admin):
        return (("yes", "With shortfall"),)

    def queryset(self, request, queryset):
        return queryset.filter(shortfall__gt=0) if self.value() == "yes" else queryset


@admin.register(LedgerEntry)
class LedgerEntryAdmin(BigTableAdmin, ReadOnlyAdmin):
    """Newest first on the primary key (``ledger_workspace_newest`` when searching an email);
    search: the email of a personal workspace's owner or an exact idempotency key (unique),
    e.g. ``proxy-call:<call id>``."""

    list_display = (
        "id",
        "created_at",
        "workspace",
        "kind",
        "amount",
        "balance_after",
        "endpoint",
        "reference",
        "shortfall",
    )
    list_filter = ("kind", ShortfallFilter, "created_at")
    ordering = ("-id",)
    sortable_by = ("id",)
    user_field = "workspace__personal_owner"
    exact_search_fields = ("idempotency_key",)
    list_select_related = ("workspace",)


class PromotionalGrantFields(forms.Form):
    """What a grant of promotional credits says: how many, until when, why."""

    amount = forms.IntegerField(min_value=1, max_value=1_000_000)
    expires_at = forms.DateTimeField(
        required=False, help_text="Empty: the credits never expire. YYYY-MM-DD HH:MM, in UTC."
    )
    reason = forms.CharField(max_length=500, required=False)
    # Generated when the form is shown, so a double submit grants once.
    idempotency_key = forms.CharField(widget=forms.HiddenInput)

    def clean_expires_at(self):
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at


class GrantForm(PromotionalGrantFields):
    workspace = forms.ModelChoiceField(queryset=Workspace.objects.order_by("name", "pk"))
    field_order = ["workspace", "amount", "expires_at", "reason"]


class GrantActionForm(PromotionalGrantFields):
    """The "Grant promotional credits" action's own page; the hidden fields carry the selection
    back to the changelist's action dispatch."""

    action = forms.CharField(widget=forms.HiddenInput, initial="grant_promotional_credits")
    _selected_action = forms.Field(widget=forms.MultipleHiddenInput)
    apply = forms.CharField(widget=forms.HiddenInput, initial="1")


@admin.register(CreditAccount)
class CreditAccountAdmin(ReadOnlyAdmin):
    list_display = (
        "workspace",
        "balance",
        "held",
        "first_purchase_at",
        "updated_at",
    )
    search_fields = ("workspace__name", "workspace__slug", "workspace__personal_owner__email")
    list_select_related = ("workspace",)
    change_list_template = "admin/credits/creditaccount/change_list.html"
    actions = ["grant_promotional_credits"]

    def has_grant_permission(self, request) -> bool:
        return request.user.is_superuser or request.user.has_perm("credits.add_ledgerentry")

    @admin.action(description="Grant promotional credits", permissions=["grant"])
    def grant_promotional_credits(self, request, queryset):
        """Grant the same promotional credits (amount, expiry, reason) to each selected
        workspace through ``credit_grant``; one idempotency key per form and workspace, so a
        double submit grants once."""
        if "apply" not in request.POST:
            form = GrantActionForm(
                initial={
                    "idempotency_key": uuid.uuid4().hex,
                    "_selected_action": [str(pk) for pk in queryset.values_list("pk", flat=True)],
                }
            )
        else:
            form = GrantActionForm(request.POST)
            if form.is_valid():
                data = form.cleaned_data
                accounts = list(queryset.select_related("workspace").order_by("pk"))
                for account in accounts:
                    credit_grant(
                        workspace=account.workspace,
                        amount=data["amount"],
                        admin_user=request.user,
                        reason=data["reason"],
                        expires_at=data["expires_at"],
                        idempotency_key=f"grant:{data['idempotency_key'][:64]}:{account.workspace_id}",
                        request=request,
                    )
                until = f" until {data['expires_at']:%Y-%m-%d %H:%M}" if data["expires_at"] else ""
                self.message_user(
                    request,
                    f"Granted {data['amount']} promotional credits{until} to {len(accounts)} workspace(s).",
                )
                return None
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": f"Grant promotional credits to {queryset.count()} workspace(s)",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/credits/grant.html", context)

    def get_urls(self):
        extra = [
            path("grant/", self.admin_site.admin_view(self.grant_view), name="credits_grant"),
            path("reconcile/", self.admin_site.admin_view(self.reconcile_view), name="credits_reconcile"),
        ]
        return extra + super().get_urls()

    def grant_view(self, request):
        """Grant promotional credits (optionally expiring) to a workspace through
        ``credit_grant``, with the admin as the reference and the audit event's actor."""
        if not request.user.has_perm("credits.add_ledgerentry") and not request.user.is_superuser:
            raise PermissionDenied

        if request.method == "POST":
            form = GrantForm(request.POST)
            if form.is_valid():
                data = form.cleaned_data
                try:
                    entry = credit_grant(
                        workspace=data["workspace"],
                        amount=data["amount"],
                        admin_user=request.user,
                        reason=data["reason"],
                        expires_at=data["expires_at"],
                        idempotency_key=f"grant:{data['idempotency_key'][:64]}",
                        request=request,
                    )
                except ApiError as exc:
                    form.add_error(None, exc.message)
                else:
                    self.message_user(
                        request,
                        f"Granted {entry.amount} credits to {data['workspace']} "
                        f"(balance {entry.balance_after}).",
                    )
                    return redirect(reverse("admin:credits_creditaccount_changelist"))
        else:
            initial = {"idempotency_key": uuid.uuid4().hex}
            if request.GET.get("workspace"):
                initial["workspace"] = request.GET["workspace"]
            form = GrantForm(initial=initial)
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": "Grant credits",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/credits/grant.html", context)

    def reconcile_view(self, request):
        """Balance-vs-ledger drift report and the upsell funnel."""
        drifts = credit_ledger_reconcile()
        if drifts:
            self.message_user(request, f"{len(drifts)} account(s) drifted.", level=messages.ERROR)
        context = {
            **self.admin_site.each_context(request),
            "drifts": drifts,
            "stats": credit_conversion_stats(),
            "title": "Credits reconciliation",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/credits/reconcile.html", context)


@admin.register(CreditHold)
class CreditHoldAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "workspace", "amount", "status", "settled_amount", "reference")
    list_filter = ("status",)
    search_fields = ("workspace__personal_owner__email", "workspace__slug", "reference")
    list_select_related = ("workspace",)


@admin.register(CreditLot)
class CreditLotAdmin(ReadOnlyAdmin):
    """Where each workspace's credits came from and when they expire (read-only: lots move
    only with the ledger)."""

    list_display = (
        "id",
        "created_at",
        "workspace",
        "kind",
        "amount",
        "remaining",
        "expires_at",
        "expired_at",
        "reason",
    )
    list_filter = ("kind", "expires_at")
    search_fields = ("workspace__personal_owner__email", "workspace__slug", "reason")
    list_select_related = ("workspace",)


@admin.register(AutoTopUp)
class AutoTopUpAdmin(ReadOnlyAdmin):
    """Each workspace's auto top-up, as its owners set it (read-only: changes go through
    ``auto_top_up_update``, which keeps the account's trigger threshold in step)."""

    list_display = (
        "workspace",
        "is_enabled",
        "threshold_credits",
        "pack",
        "max_per_month",
        "disabled_reason",
        "last_failure_at",
    )
    list_filter = ("is_enabled",)
    search_fields = ("workspace__personal_owner__email", "workspace__slug")
    list_select_related = ("workspace", "pack")


@admin.register(AutoTopUpAttempt)
class AutoTopUpAttemptAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "workspace",
        "number",
        "status",
        "credits",
        "amount_minor",
        "currency",
        "error_code",
        "stripe_payment_intent_id",
    )
    list_filter = ("status",)
    search_fields = ("workspace__personal_owner__email", "workspace__slug", "stripe_payment_intent_id")
    list_select_related = ("workspace",)


@admin.register(CreditPurchase)
class CreditPurchaseAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "workspace",
        "pack",
        "credits",
        "amount_minor",
        "currency",
        "refunded_credits",
        "refund_shortfall",
    )
    list_filter = ("pack", "currency")
    search_fields = (
        "workspace__personal_owner__email",
        "workspace__slug",
        "checkout_reference",
        "stripe_payment_intent_id",
    )
    list_select_related = ("workspace", "pack")


@admin.register(UpsellEvent)
class UpsellEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "workspace", "kind", "pack")
    list_filter = ("kind", "pack")
    list_select_related = ("workspace", "pack")
