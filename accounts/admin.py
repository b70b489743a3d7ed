"""Admin for users, customer API keys and provider keys. Writes go through services."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from core.exceptions import ApiError

from .models import ApiKey, ProviderCredential, User
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
    """Read-only: keys are created by their owners; operators may only revoke."""

    list_display = ("prefix", "name", "user", "created_at", "last_used_at", "revoked_at", "expires_at")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "name", "user__email")
    list_select_related = ("user",)
    readonly_fields = (
        "user",
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
        for api_key in queryset.select_related("user"):
            if api_key.revoked_at is None:
                api_key_revoke(user=api_key.user, key_id=api_key.pk)
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
        help_text="Leave empty to keep the current secret.",
    )

    class Meta:
        model = ProviderCredential
        fields = ("provider", "scope", "user")

    def clean(self):
        cleaned = super().clean()
        secret = cleaned.get("new_secret")
        if self.instance.pk is None or secret:
            try:
                cleaned["new_secret"] = provider_secret_clean(secret or "")
            except ApiError as error:
                self.add_error("new_secret", error.message)
        if cleaned.get("scope") == ProviderCredential.Scope.PERSONAL and not cleaned.get("user"):
            self.add_error("user", "A personal key belongs to a user.")
        if cleaned.get("scope") == ProviderCredential.Scope.GLOBAL and cleaned.get("user"):
            self.add_error("user", "A global key has no user.")
        return cleaned


@admin.register(ProviderCredential)
class ProviderCredentialAdmin(admin.ModelAdmin):
    form = ProviderCredentialForm
    list_display = ("provider", "scope", "user", "masked", "updated_at")
    list_filter = ("scope", "provider")
    search_fields = ("user__email", "provider")
    list_select_related = ("user",)
    readonly_fields = ("masked", "created_at", "updated_at")

    @method_decorator(sensitive_post_parameters("new_secret"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:  # what a row is for never changes; replace the secret or delete it
            return ("provider", "scope", "user", *self.readonly_fields)
        return self.readonly_fields

    def get_fields(self, request, obj=None):
        fields = ["provider", "scope", "user", "new_secret"]
        return fields + (["masked", "created_at", "updated_at"] if obj is not None else [])

    def save_model(self, request, obj, form, change):
        secret = form.cleaned_data.get("new_secret")
        if change and not secret:
            return
        credential = provider_credential_set(
            scope=obj.scope,
            provider=obj.provider,
            secret=secret,
            user=obj.user if obj.scope == ProviderCredential.Scope.PERSONAL else None,
            actor=request.user,
        )
        obj.pk = credential.pk
        obj.masked = credential.masked
        obj.created_at = credential.created_at
        obj.updated_at = credential.updated_at

    def delete_model(self, request, obj):
        provider_credential_delete(scope=obj.scope, provider=obj.provider, user=obj.user, actor=request.user)

    def delete_queryset(self, request, queryset):
        for credential in queryset.select_related("user"):
            self.delete_model(request, credential)
