"""Admin for users, workspaces' API keys and provider keys. Writes go through services.

A global provider key is checked with the provider before it is saved (``key_checks``): the
change form has a "Test the key" button (the typed key, not yet saved) and saving refuses a key
the provider rejects, or one it could not check unless "save anyway" is ticked.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.urls import path
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from core.exceptions import ApiError

from . import admin_workspaces  # noqa: F401 (registers the workspace, member, invitation and audit admins)
from .key_checks import (
    OUTCOME_OK,
    OUTCOME_REJECTED,
    OUTCOME_UNAVAILABLE,
    ProviderKeyCheck,
    provider_key_check,
)
from .models import ApiKey, ProviderCredential, User
from .providers import provider_get
from .services import (
    PROVIDER_SECRET_MAX_LENGTH,
    api_key_revoke,
    provider_credential_delete,
    provider_credential_set,
    provider_secret_clean,
)


class EmailUserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


class EmailUserChangeForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = EmailUserChangeForm
    add_form = EmailUserCreationForm
    ordering = ("email",)
    list_display = ("email", "name", "is_staff", "is_active", "date_joined")
    search_fields = ("email", "name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Read-only: keys are created by workspace members; operators may only revoke."""

    list_display = (
        "prefix",
        "name",
        "workspace",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
        "expires_at",
    )
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "name", "created_by__email", "workspace__slug")
    list_select_related = ("workspace", "created_by")
    readonly_fields = (
        "workspace",
        "created_by",
        "name",
        "prefix",
        "key_hash",
        "created_at",
        "last_used_at",
        "revoked_at",
        "expires_at",
    )
    actions = ("revoke_keys",)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: usage history points at keys

    @admin.action(description="Revoke the selected keys")
    def revoke_keys(self, request, queryset):
        count = 0
        for api_key in queryset.select_related("workspace"):
            if api_key.revoked_at is None:
                api_key_revoke(
                    workspace=api_key.workspace, key_id=api_key.pk, actor=request.user, request=request
                )
                count += 1
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)


class ProviderCredentialForm(forms.ModelForm):
    """The secret is write-only: typed in, saved through the service, never rendered back."""

    new_secret = forms.CharField(
        label="Secret",
        required=False,
        strip=False,
        max_length=PROVIDER_SECRET_MAX_LENGTH * 4,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Leave empty to keep the current secret. A global key is checked with the provider "
        "before it is saved.",
    )
    save_anyway = forms.BooleanField(
        label="Save even if the provider cannot be reached",
        required=False,
        help_text="For a provider that is down or timing out. A key the provider rejects is never saved.",
    )
    key_check: ProviderKeyCheck | None = None  # run before the admin's transaction (see the admin)

    class Meta:
        model = ProviderCredential
        fields = ("provider", "scope", "workspace")

    def clean(self):
        cleaned = super().clean()
        secret = cleaned.get("new_secret")
        if self.instance.pk is None or secret:
            try:
                cleaned["new_secret"] = provider_secret_clean(secret or "")
            except ApiError as error:
                self.add_error("new_secret", error.message)
        if cleaned.get("scope") == ProviderCredential.Scope.WORKSPACE and not cleaned.get("workspace"):
            self.add_error("workspace", "A workspace key belongs to a workspace.")
        if cleaned.get("scope") == ProviderCredential.Scope.GLOBAL and cleaned.get("workspace"):
            self.add_error("workspace", "A global key has no workspace.")
        check = self.key_check
        if check is not None and check.outcome == OUTCOME_REJECTED:
            self.add_error(
                "new_secret", f"{check.provider} rejected this key ({check.status}): {check.message}"
            )
        elif check is not None and check.outcome == OUTCOME_UNAVAILABLE and not cleaned.get("save_anyway"):
            self.add_error(
                "new_secret",
                f"The key could not be checked: {check.message} Retry, or tick "
                '"Save even if the provider cannot be reached".',
            )
        return cleaned


def _posted_global_key(request, credential: ProviderCredential | None) -> tuple[str, str] | None:
    """(provider, secret) of a global key the POST would save, or None (nothing to check)."""
    provider = credential.provider if credential else request.POST.get("provider", "")
    scope = credential.scope if credential else request.POST.get("scope", "")
    if scope != ProviderCredential.Scope.GLOBAL or provider_get(provider) is None:
        return None
    try:
        return provider, provider_secret_clean(request.POST.get("new_secret", ""))
    except ApiError:
        return None  # the form reports it


@admin.register(ProviderCredential)
class ProviderCredentialAdmin(admin.ModelAdmin):
    form = ProviderCredentialForm
    list_display = ("provider", "scope", "workspace", "masked", "updated_at")
    list_filter = ("scope", "provider")
    search_fields = ("workspace__slug", "workspace__name", "provider")
    list_select_related = ("workspace",)
    raw_id_fields = ("workspace",)
    readonly_fields = ("masked", "created_at", "updated_at")

    @method_decorator(sensitive_post_parameters("new_secret"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # The provider is asked here, before the admin opens its transaction for the save.
        request.provider_key_check = None
        allowed = self.has_change_permission(request) if object_id else self.has_add_permission(request)
        if request.method == "POST" and allowed:
            credential = self.get_object(request, object_id) if object_id else None
            posted = _posted_global_key(request, credential)
            if posted is not None:
                request.provider_key_check = provider_key_check(provider=posted[0], secret=posted[1])
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.key_check = getattr(request, "provider_key_check", None)
        return form

    def get_urls(self):
        test = self.admin_site.admin_view(self.key_test_view)
        return [path("test-key/", test, name="accounts_providercredential_test_key"), *super().get_urls()]

    @method_decorator(sensitive_post_parameters("new_secret"))
    @method_decorator(require_POST)
    def key_test_view(self, request):
        """The "Test the key" button: the provider's answer to the typed key, as JSON; saves nothing."""
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        provider = request.POST.get("provider", "")
        if provider_get(provider) is None:
            return JsonResponse({"outcome": "invalid", "message": "Choose a provider."}, status=400)
        try:
            secret = provider_secret_clean(request.POST.get("new_secret", ""))
        except ApiError as error:
            return JsonResponse({"outcome": "invalid", "message": error.message}, status=400)
        return JsonResponse(provider_key_check(provider=provider, secret=secret).as_dict())

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:  # what a row is for never changes; replace the secret or delete it
            return ("provider", "scope", "workspace", *self.readonly_fields)
        return self.readonly_fields

    def get_fields(self, request, obj=None):
        fields = ["provider", "scope", "workspace", "new_secret", "save_anyway"]
        return fields + (["masked", "created_at", "updated_at"] if obj is not None else [])

    def save_model(self, request, obj, form, change):
        secret = form.cleaned_data.get("new_secret")
        if change and not secret:
            return
        credential = provider_credential_set(
            scope=obj.scope,
            provider=obj.provider,
            secret=secret,
            workspace=obj.workspace if obj.scope == ProviderCredential.Scope.WORKSPACE else None,
            actor=request.user,
            request=request,
        )
        obj.pk = credential.pk
        obj.masked = credential.masked
        obj.created_at = credential.created_at
        obj.updated_at = credential.updated_at
        check = form.key_check
        if check is not None:
            level = messages.SUCCESS if check.outcome == OUTCOME_OK else messages.WARNING
            self.message_user(request, f"Provider check ({check.outcome}): {check.message}", level)

    def delete_model(self, request, obj):
        provider_credential_delete(
            scope=obj.scope,
            provider=obj.provider,
            workspace=obj.workspace,
            actor=request.user,
            request=request,
        )

    def delete_queryset(self, request, queryset):
        for credential in queryset.select_related("workspace"):
            self.delete_model(request, credential)
