"""Admin for workspaces, their members, invitations and the audit log.

An operator's changes go through the services with ``as_operator=True``: the role checks are
skipped, the rules are not (a workspace keeps an owner, a personal workspace has one owner and
cannot be deleted, a workspace holding money cannot be deleted), and each change is audited with
``"via": "admin"``. Invitations and audit events are read-only here.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from core.exceptions import ApiError

from .models import AuditEvent, Invitation, Membership, Role, Workspace
from .registry import workspace_summary_lines
from .services.workspaces import (
    membership_create,
    membership_remove,
    membership_role_change,
    workspace_delete,
    workspace_delete_refusals,
    workspace_update,
)


class MembershipInlineFormSet(forms.BaseInlineFormSet):
    """Refuse, before anything is saved, what the services would refuse: no owner left, a
    second owner of a personal workspace, a row moved to another user."""

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        owners, others_as_owner = 0, False
        personal_owner_id = self.instance.personal_owner_id
        for form in self.forms:
            data = getattr(form, "cleaned_data", None) or {}
            if not data:
                continue
            if form.instance.pk and "user" in form.changed_data:
                raise forms.ValidationError("A member's user cannot change: remove the row and add another.")
            if data.get("DELETE"):
                continue
            if data.get("role") == Role.OWNER:
                owners += 1
                user = data.get("user")
                if personal_owner_id is not None and user is not None and user.pk != personal_owner_id:
                    others_as_owner = True
        if self.instance.pk and owners == 0:
            raise forms.ValidationError("A workspace keeps at least one owner.")
        if others_as_owner:
            raise forms.ValidationError("A personal workspace has a single owner: its account.")


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = MembershipInlineFormSet
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "slug",
        "personal_owner",
        "member_count",
        "pending_invitation_count",
        "suspended_at",
        "created_at",
        "customer_page",
    )
    search_fields = ("name", "slug", "personal_owner__email", "memberships__user__email")
    list_select_related = ("personal_owner",)
    fields = (
        "name",
        "slug",
        "personal_owner",
        "customer_page",
        "summary",
        "suspended_at",
        "suspension_reason",
        "created_at",
        "updated_at",
    )
    # Suspension goes through ``workspace_suspend`` / ``workspace_reinstate`` (the customer page),
    # which re-publish the keys' cached identities: never edited in this form.
    readonly_fields = (
        "slug",
        "personal_owner",
        "customer_page",
        "summary",
        "suspended_at",
        "suspension_reason",
        "created_at",
        "updated_at",
    )
    inlines = (MembershipInline,)
    show_full_result_count = False

    def get_queryset(self, request):
        now = timezone.now()
        pending = Q(
            invitations__accepted_at__isnull=True,
            invitations__revoked_at__isnull=True,
            invitations__expires_at__gt=now,
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                member_total=Count("memberships", distinct=True),
                pending_total=Count("invitations", filter=pending, distinct=True),
            )
        )

    @admin.display(description="Plan, credits and keys")
    def summary(self, obj):
        """What other apps say about the workspace (``accounts.registry``), and its live keys."""
        if obj.pk is None:
            return "—"
        live_keys = obj.api_keys.filter(revoked_at__isnull=True).count()
        lines = [*workspace_summary_lines(workspace=obj), ("Live API keys", str(live_keys))]
        return format_html_join(mark_safe("<br>"), "{}: {}", lines)

    @admin.display(description="Customer page")
    def customer_page(self, obj):
        """The operator's page for this workspace (``dashboards.workspace_admin``)."""
        if obj.pk is None:
            return "—"
        return format_html('<a href="{}">Customer page</a>', reverse("admin:workspace-360", args=[obj.pk]))

    @admin.display(description="Members", ordering="member_total")
    def member_count(self, obj):
        return obj.member_total

    @admin.display(description="Pending invitations", ordering="pending_total")
    def pending_invitation_count(self, obj):
        return obj.pending_total

    def has_add_permission(self, request):
        return False  # a workspace is made by its owner (site or API), who becomes a member

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, through the service's guards
        return actions

    def save_model(self, request, obj, form, change):
        if change and "name" in form.changed_data:
            workspace_update(
                workspace=obj, actor=request.user, name=obj.name, as_operator=True, request=request
            )

    def save_formset(self, request, form, formset, change):
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        workspace = form.instance
        added = [
            f
            for f in formset.forms
            if not f.instance.pk and f.has_changed() and f not in formset.deleted_forms
        ]
        changed = [
            f
            for f in formset.forms
            if f.instance.pk and "role" in f.changed_data and f not in formset.deleted_forms
        ]
        # Promotions before demotions and removals: handing ownership over never leaves none.
        changed.sort(key=lambda f: f.cleaned_data["role"] != Role.OWNER)
        calls = [
            *(
                lambda f=f: membership_create(
                    workspace=workspace,
                    user=f.cleaned_data["user"],
                    role=f.cleaned_data["role"],
                    actor=request.user,
                    request=request,
                )
                for f in added
            ),
            *(
                lambda f=f: membership_role_change(
                    workspace=workspace,
                    actor=request.user,
                    user_id=f.instance.user_id,
                    role=f.cleaned_data["role"],
                    as_operator=True,
                    request=request,
                )
                for f in changed
            ),
            *(
                lambda f=f: membership_remove(
                    workspace=workspace,
                    actor=request.user,
                    user_id=f.instance.user_id,
                    as_operator=True,
                    request=request,
                )
                for f in formset.deleted_forms
                if f.instance.pk
            ),
        ]
        for call in calls:
            try:
                call()
            except ApiError as error:  # a concurrent change since the form was read
                self.message_user(request, error.message, messages.ERROR)
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def delete_view(self, request, object_id, extra_context=None):
        workspace = self.get_object(request, object_id)
        if workspace is not None and request.method == "POST":
            refusals = (
                ["A personal workspace cannot be deleted."]
                if workspace.personal
                else workspace_delete_refusals(workspace=workspace)
            )
            if refusals:
                self.message_user(request, "Not deleted: " + " ".join(refusals), messages.ERROR)
                url = reverse("admin:accounts_workspace_change", args=[workspace.pk])
                return HttpResponseRedirect(url)
        return super().delete_view(request, object_id, extra_context)

    def get_deleted_objects(self, objs, request):
        """A workspace's rows go with it (keys, invitations, audit events, usage…) although their
        own admins delete none of them one by one: whether it may go at all is the service's
        decision (``workspace_delete_refusals``: live keys, money), checked in ``delete_view``.
        Rows that PROTECT still stop it."""
        deleted, counts, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected

    def delete_model(self, request, obj):
        workspace_delete(workspace=obj, actor=request.user, as_operator=True, request=request)


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Read-only: invitations are sent and revoked by the workspace's owners and admins."""

    list_display = ("email", "workspace", "role", "state", "invited_by", "created_at", "expires_at")
    list_filter = ("role",)
    search_fields = ("email", "workspace__name", "workspace__slug")
    list_select_related = ("workspace", "invited_by")
    fields = (
        "workspace",
        "email",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_by",
        "revoked_at",
    )
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description="State")
    def state(self, obj):
        if obj.accepted_at:
            return "accepted"
        if obj.revoked_at:
            return "revoked"
        return "expired" if obj.expires_at <= timezone.now() else "pending"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Append-only: nobody adds, changes or deletes an event, the operator included."""

    list_display = ("created_at", "action", "actor_email", "workspace", "target", "ip")
    list_filter = ("action", ("workspace", admin.RelatedOnlyFieldListFilter))
    search_fields = ("actor_email", "target")
    list_select_related = ("workspace",)
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "action",
        "actor",
        "actor_email",
        "workspace",
        "target",
        "details",
        "ip",
        "request_id",
    )
    readonly_fields = fields
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
