"""Operator admin: organizations (pending / linked), the "Link to Stripe" page, ingestion
tokens and queued name/URL changes, and usage reports with "retry sending" and the review of
held reports. Every write goes through organizations.services."""

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from billing.gateways.stripe import StripeServiceError
from core.exceptions import ApiError

from .forms import OrganizationLinkForm
from .models import Organization, UsageReport
from .selectors import organization_get
from .services import (
    organization_identity_accept,
    organization_identity_discard,
    organization_ingestion_token_issue,
    organization_ingestion_token_revoke,
    organization_jump_factor_set,
    organization_link,
    usage_report_reject,
    usage_report_release,
    usage_report_retry,
)


class LinkedFilter(admin.SimpleListFilter):
    title = "Stripe link"
    parameter_name = "linked"

    def lookups(self, request, model_admin):
        return (("pending", "Pending (not linked)"), ("linked", "Linked"))

    def queryset(self, request, queryset):
        if self.value() == "pending":
            return queryset.filter(stripe_subscription_id__isnull=True)
        if self.value() == "linked":
            return queryset.filter(stripe_subscription_id__isnull=False)
        return queryset


class IdentityChangeFilter(admin.SimpleListFilter):
    title = "name/URL change"
    parameter_name = "identity_change"

    def lookups(self, request, model_admin):
        return (("pending", "Waiting for review"),)

    def queryset(self, request, queryset):
        if self.value() == "pending":
            return queryset.filter(pending_identity_at__isnull=False)
        return queryset


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "instance_url",
        "latest_user_count",
        "first_seen_at",
        "plan_type",
        "status",
        "trial_end",
        "review",
        "link_action",
    )
    list_filter = (LinkedFilter, IdentityChangeFilter, "status", "plan_type", "deployment_type")
    search_fields = ("name", "instance_url", "=id", "admin_email", "=stripe_customer_id")
    ordering = ("-created_at",)
    readonly_fields = (
        "id",
        "name",
        "instance_url",
        "status",
        "latest_user_count",
        "first_seen_at",
        "last_report_at",
        "admin_email",
        "deployment_type",
        "plan_type",
        "stripe_price_id",
        "stripe_customer_id",
        "stripe_subscription_id",
        "trial_end",
        "linked_at",
        "link_error",
        "subscription_event_at",
        "pending_name",
        "pending_instance_url",
        "pending_identity_at",
        "ingestion_token_prefix",
        "ingestion_token_issued_at",
        "created_at",
        "usage_reports",
    )
    fields = (*readonly_fields, "user_count_jump_factor")
    actions = [
        "accept_pending_identity",
        "discard_pending_identity",
        "issue_ingestion_token",
        "revoke_ingestion_token",
    ]

    def save_model(self, request, obj, form, change):
        # The only editable field; the service owns the write.
        organization_jump_factor_set(organization=obj, factor=form.cleaned_data["user_count_jump_factor"])

    def has_add_permission(self, request):
        return False  # organizations are created by their first usage report

    def has_delete_permission(self, request, obj=None):
        return False  # reports reference them; billing history must stay

    @admin.display(description="Usage reports")
    def usage_reports(self, obj):
        # A link, not an inline: an instance reports daily, so the list grows without bound.
        url = reverse("admin:organizations_usagereport_changelist") + f"?organization__id__exact={obj.pk}"
        return format_html('<a href="{}">Usage reports of this organization</a>', url)

    @admin.display(description="Review")
    def review(self, obj):
        flags = []
        if obj.has_pending_identity:
            flags.append("name/URL change pending")
        if obj.has_ingestion_token:
            flags.append("own token")
        return ", ".join(flags) or "—"

    @admin.action(description="Accept the pending name/URL changes")
    def accept_pending_identity(self, request, queryset):
        accepted = sum(organization_identity_accept(organization=o) for o in queryset)
        self.message_user(request, f"{accepted} organization(s) renamed.", messages.SUCCESS)

    @admin.action(description="Discard the pending name/URL changes")
    def discard_pending_identity(self, request, queryset):
        discarded = sum(organization_identity_discard(organization=o) for o in queryset)
        self.message_user(request, f"{discarded} pending change(s) discarded.", messages.SUCCESS)

    @admin.action(description="Issue an ingestion token (shown once; replaces the previous one)")
    def issue_ingestion_token(self, request, queryset):
        """A confirmation page first (the instance stops being accepted until it has the new
        token); then the token, on a page that is never cached and never stored in messages."""
        organizations = list(queryset[:2])
        if len(organizations) != 1:
            self.message_user(request, "Select exactly one organization.", messages.ERROR)
            return None
        organization = organizations[0]
        token = None
        if request.POST.get("confirm") == "yes":
            token = organization_ingestion_token_issue(organization=organization)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "organization": organization,
            "token": token,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "title": f"Ingestion token for {organization.name}",
            "change_url": reverse("admin:organizations_organization_change", args=[organization.pk]),
        }
        response = TemplateResponse(request, "admin/organizations/organization/ingestion_token.html", context)
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke the ingestion token (back to the shared token)")
    def revoke_ingestion_token(self, request, queryset):
        revoked = sum(organization_ingestion_token_revoke(organization=o) for o in queryset)
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)

    @admin.display(description="Stripe")
    def link_action(self, obj):
        if obj.is_linked:
            return "linked"
        url = reverse("admin:organizations_organization_link", args=[obj.pk])
        return format_html('<a class="button" href="{}">Link to Stripe</a>', url)

    def get_urls(self):
        custom = [
            path(
                "<uuid:organization_id>/link/",
                self.admin_site.admin_view(self.link_view),
                name="organizations_organization_link",
            )
        ]
        return custom + super().get_urls()

    def link_view(self, request, organization_id):
        """The "Link to Stripe" page. Stripe errors are shown on the form, never as a 500."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        organization = organization_get(organization_id=organization_id)
        if organization is None:
            raise Http404("No such organization.")
        change_url = reverse("admin:organizations_organization_change", args=[organization.pk])
        if organization.is_linked:
            messages.info(request, "This organization is already linked to Stripe.")
            return HttpResponseRedirect(change_url)
        form = OrganizationLinkForm(request.POST or None, organization=organization)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                organization = organization_link(
                    organization=organization,
                    admin_email=data["admin_email"],
                    deployment_type=data["deployment_type"],
                    plan_type=data["plan_type"],
                    trial_days=data["trial_days"],
                    price_id=data["price_id"] or None,
                    backfill=data["backfill"],
                )
            except StripeServiceError as exc:
                form.add_error(None, exc.message)
            except ApiError as exc:
                form.add_error(exc.param if exc.param in form.fields else None, exc.message)
            else:
                messages.success(
                    request,
                    f"{organization.name} is linked: customer {organization.stripe_customer_id}, "
                    f"subscription {organization.stripe_subscription_id} ({organization.status}).",
                )
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": organization,
            "organization": organization,
            "form": form,
            "title": f"Link {organization.name} to Stripe",
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/organizations/organization/link.html", context)


@admin.register(UsageReport)
class UsageReportAdmin(admin.ModelAdmin):
    list_display = (
        "organization",
        "report_on",
        "user_count",
        "billing_status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "last_error",
        "hold_reason",
    )
    list_filter = ("billing_status", "report_on")
    list_select_related = ("organization",)
    search_fields = ("=organization__id", "organization__name", "=meter_identifier")
    date_hierarchy = "report_on"
    actions = ["retry_sending", "release_held", "reject_held"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Retry sending the selected failed reports to Stripe")
    def retry_sending(self, request, queryset):
        retried = sum(usage_report_retry(report=report) for report in queryset)
        skipped = queryset.count() - retried
        self.message_user(request, f"{retried} report(s) queued for sending.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"{skipped} report(s) skipped: only failed reports are retried.", messages.WARNING
            )

    @admin.action(description="Release the selected held reports (bill them)")
    def release_held(self, request, queryset):
        released, conflicts = 0, []
        for report in queryset.select_related("organization"):
            try:
                released += usage_report_release(report=report)
            except ApiError as exc:
                conflicts.append(f"{report}: {exc.message}")
        self.message_user(request, f"{released} held report(s) released.", messages.SUCCESS)
        for conflict in conflicts:
            self.message_user(request, f"Not released — {conflict} Reject it instead.", messages.WARNING)

    @admin.action(description="Reject the selected held reports (never bill them)")
    def reject_held(self, request, queryset):
        rejected = sum(usage_report_reject(report=report) for report in queryset)
        self.message_user(request, f"{rejected} held report(s) rejected.", messages.SUCCESS)
