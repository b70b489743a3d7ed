"""Account pages: sign-up, log-in, profile (provider keys) and the keys page with its forms."""

import logging

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone, translation
from django.utils.cache import add_never_cache_headers
from django.utils.encoding import force_str
from django.utils.http import urlsafe_base64_decode
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.i18n import set_language as django_set_language

from core.exceptions import CACHE_UNAVAILABLE_ERRORS, ApiError
from core.redirects import safe_next_url

from .credential_limits import CredentialDoor, credential_attempt_count
from .forms import (
    ApiKeyCreateForm,
    ApiKeyRotateForm,
    EmailAuthenticationForm,
    ProviderKeyForm,
    SignupForm,
    TimeZoneForm,
)
from .key_checks import provider_key_verify
from .key_flash import key_flash_set
from .models import ProviderCredential
from .selectors import (
    api_key_limits_usage_get,
    api_key_list,
    api_key_manageable_get,
    key_reveal_get,
    provider_key_status_list,
)
from .services import (
    api_key_create,
    api_key_revoke,
    api_key_rotate,
    key_reveal_consume,
    provider_credential_delete,
    provider_credential_set,
    user_register,
)
from .services.users import user_language_set
from .services.verification import email_verification_send
from .services.verification import email_verify as email_verify_service
from .tenancy import WorkspaceContext, page_context_get

logger = logging.getLogger("tollgate.accounts")

# Seconds a client is asked to wait when the shared cache (the attempt counters) is down.
CACHE_DOWN_RETRY_AFTER = 5


def credential_door_refusal(request, *, door: CredentialDoor, account: str | None) -> HttpResponse | None:
    """Count this attempt at a credential form; the page refusing it when over a limit.

    429 with ``Retry-After`` past a limit; 503 when the counters cannot be read (fail closed, as
    the API does: an attempt that cannot be counted is not processed). None: go on.
    """
    try:
        wait = credential_attempt_count(request=request, door=door, account=account)
    except CACHE_UNAVAILABLE_ERRORS as exc:
        extra = {"door": str(door), "error": type(exc).__name__}
        logger.warning("credential attempt not counted", extra=extra)
        return _refusal_page(request, status=503, retry_after=CACHE_DOWN_RETRY_AFTER)
    if wait is None:
        return None
    return _refusal_page(request, status=429, retry_after=wait)


def _refusal_page(request, *, status: int, retry_after: int) -> HttpResponse:
    context = {"retry_after": retry_after, "unavailable": status == 503}
    response = render(request, "registration/too_many_attempts.html", context, status=status)
    response["Retry-After"] = str(retry_after)
    add_never_cache_headers(response)
    return response


class CredentialDoorMixin:
    """Counts a class-based view's attempts (its POSTs, by default) before it handles them."""

    credential_door: CredentialDoor
    credential_methods: tuple[str, ...] = ("POST",)

    def credential_account(self, request) -> str | None:
        return request.POST.get("username")

    def dispatch(self, request, *args, **kwargs):
        if request.method in self.credential_methods:
            refusal = credential_door_refusal(
                request, door=self.credential_door, account=self.credential_account(request)
            )
            if refusal is not None:
                return refusal
        return super().dispatch(request, *args, **kwargs)


class LoginView(CredentialDoorMixin, auth_views.LoginView):
    credential_door = CredentialDoor.LOGIN
    form_class = EmailAuthenticationForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True


class PasswordResetView(CredentialDoorMixin, auth_views.PasswordResetView):
    """Limited per address and per email: also keeps anyone from mail-bombing an address."""

    credential_door = CredentialDoor.PASSWORD_RESET
    email_template_name = "registration/password_reset_email.txt"
    success_url = reverse_lazy("accounts:password_reset_done")

    def credential_account(self, request) -> str | None:
        return request.POST.get("email")


class PasswordResetConfirmView(CredentialDoorMixin, auth_views.PasswordResetConfirmView):
    """Every request counts: the link's token is checked on GET as well as on POST."""

    credential_door = CredentialDoor.PASSWORD_RESET_CONFIRM
    credential_methods = ("GET", "HEAD", "POST")
    success_url = reverse_lazy("accounts:password_reset_complete")

    def credential_account(self, request) -> str | None:
        uidb64 = self.kwargs.get("uidb64", "")
        try:  # the user id, so re-encodings of one uid share its counter
            return "user:" + force_str(urlsafe_base64_decode(uidb64))
        except (ValueError, UnicodeDecodeError):
            return "uid:" + uidb64


@sensitive_post_parameters("password")
@never_cache
def admin_login(request):
    """``/admin/login/``: the admin's own log-in, behind the log-in door's limits."""
    if request.method == "POST":
        refusal = credential_door_refusal(
            request, door=CredentialDoor.LOGIN, account=request.POST.get("username")
        )
        if refusal is not None:
            return refusal
    return admin.site.login(request)


@sensitive_post_parameters("old_password", "new_password1", "new_password2")
@never_cache
def admin_password_change(request):
    """``/admin/password_change/``: it checks the old password, so it is a door to guess it."""
    if request.method == "POST" and request.user.is_authenticated:
        refusal = credential_door_refusal(
            request, door=CredentialDoor.PASSWORD_CHANGE, account=f"user:{request.user.pk}"
        )
        if refusal is not None:
            return refusal
    return admin.site.admin_view(admin.site.password_change, cacheable=True)(request)


def _apply_api_error(form, error: ApiError) -> None:
    """Show a service's 400 on the form field it names (or on the form)."""
    errors = error.extra.get("errors") or {}
    for field_name, field_messages in errors.items():
        target = field_name if field_name in form.fields else None
        for message in field_messages:
            form.add_error(target, str(message))
    if not errors:
        form.add_error(None, error.message)


@sensitive_post_parameters("password1", "password2")
@require_http_methods(["GET", "POST"])
def signup(request):
    next_url = _safe_next(request)
    if request.user.is_authenticated:
        return redirect(next_url or "accounts:dashboard")
    if request.method == "POST":
        email = request.POST.get("email")
        refusal = credential_door_refusal(request, door=CredentialDoor.SIGNUP, account=email)
        if refusal is not None:
            return refusal
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = user_register(
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
                language=_signup_language(),
            )
        except ApiError as error:
            _apply_api_error(form, error)
            if "password1" not in form.errors and "password" in (error.extra.get("errors") or {}):
                form.add_error("password1", error.message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            if next_url:  # e.g. the invitation that brought them here
                return redirect(next_url)
            messages.success(request, _("Welcome to Tollgate. Create your first API key below."))
            return redirect("accounts:dashboard")
    return render(request, "registration/signup.html", {"form": form, "next": next_url})


def _signup_language() -> str:
    """The sign-up page's language when it is not the default: their emails start in it. An
    English page stores nothing (blank already means English)."""
    language = translation.get_language() or ""
    return "" if language == settings.LANGUAGE_CODE else language


def set_language(request):
    """The footer's language switcher: Django's ``set_language`` (the cookie; a GET changes
    nothing), and for a signed-in person the language their emails are written in."""
    response = django_set_language(request)
    if request.method == "POST" and request.user.is_authenticated:
        user_language_set(user=request.user, language=request.POST.get("language", ""))
    return response


def _workspace_template_context(ctx: WorkspaceContext, **extra) -> dict:
    """What every workspace page hands its template: the context, and the actions the role may
    do (``{% if "keys.manage_any" in perms_ws %}``: templates cannot call ``ctx.can``)."""
    return {"workspace_context": ctx, "perms_ws": ctx.permissions, **extra}


@login_required
@require_GET
def keys_page(request):
    """The workspace's proxy keys (create, rotate, revoke; each with its limits and their use)
    and which provider key its calls use. Owners and admins see every key, other members the
    keys they created (as ``GET /api/keys``)."""
    ctx = page_context_get(request)
    ctx.require_page("keys.read")
    created_by = None if ctx.can("keys.manage_any") else ctx.user
    keys = list(api_key_list(workspace=ctx.workspace, created_by=created_by))
    usage = api_key_limits_usage_get(api_keys=keys)  # one query, only for keys with limits
    for key in keys:
        key.limits_usage = usage.get(key.pk, [])
    context = _workspace_template_context(
        ctx,
        api_keys=keys,
        create_form=ApiKeyCreateForm(),
        rotate_form=ApiKeyRotateForm(),
        provider_keys=(
            provider_key_status_list(workspace=ctx.workspace) if ctx.can("provider_keys.read") else []
        ),
    )
    return render(request, "accounts/keys.html", context)


keys_page.permission_required = {"get": "keys.read"}  # read by the workspace sweep (tests/)


def _safe_next(request) -> str:
    """The ``next`` of a GET or POST when it stays on this site, else ""."""
    return safe_next_url(request, request.POST.get("next") or request.GET.get("next") or "")


def _back(request) -> str:
    """The page a key form was posted from (its ``next`` field, same site only), else the keys
    page: Post/Redirect/Get back to where the user was."""
    return _safe_next(request) or reverse("accounts:keys")


@login_required
@require_POST
def dashboard_key_create(request):
    """Create a key, then redirect: the page shows it once in a dialog (``accounts.key_flash``),
    so reloading it neither shows it again nor creates a second key."""
    ctx = page_context_get(request)
    ctx.require_page("keys.create")
    form = ApiKeyCreateForm(request.POST)
    if form.is_valid():
        try:
            api_key, plaintext = api_key_create(
                workspace=ctx.workspace, created_by=ctx.user, name=form.cleaned_data["name"], request=request
            )
        except ApiError as error:
            messages.error(request, error.message)
        else:
            key_flash_set(request, api_key=api_key, plaintext=plaintext)
    else:
        messages.error(request, _("Give the key a name (up to 100 characters)."))
    return redirect(_back(request))


def _service_or_404(call):
    """A service's 404 is the page's 404, its 403 (a role that may not) the page's 403."""
    try:
        return call()
    except ApiError as error:
        if error.status_code == 404:
            raise Http404(error.message)
        if error.status_code == 403:
            raise PermissionDenied(error.message)
        raise


def _manageable_key(request, key_id: int):
    """(context, key) for a revoke or rotate: the member's own key, or any with keys.manage_any."""
    ctx = page_context_get(request)
    return ctx, _service_or_404(lambda: api_key_manageable_get(context=ctx, key_id=key_id))


@login_required
@require_POST
def dashboard_key_revoke(request, key_id: int):
    ctx, api_key = _manageable_key(request, key_id)
    api_key = api_key_revoke(workspace=ctx.workspace, key_id=api_key.pk, actor=ctx.user, request=request)
    messages.success(
        request, _("Key %(prefix)s… revoked. It stops working immediately.") % {"prefix": api_key.prefix}
    )
    return redirect(_back(request))


@login_required
@require_POST
def dashboard_key_rotate(request, key_id: int):
    ctx, api_key = _manageable_key(request, key_id)
    form = ApiKeyRotateForm(request.POST)
    grace = form.cleaned_data["grace_seconds"] if form.is_valid() else 0
    try:
        rotation = api_key_rotate(
            workspace=ctx.workspace, key_id=api_key.pk, actor=ctx.user, grace_seconds=grace, request=request
        )
    except ApiError as error:
        messages.error(request, error.message)
    else:
        key_flash_set(
            request, api_key=rotation.new_key, plaintext=rotation.plaintext, rotated_from=rotation.old_key
        )
    return redirect(_back(request))


@login_required
@require_http_methods(["GET", "POST"])
def key_reveal(request, token: str):
    """A one-time link: GET asks for confirmation (link scanners must not burn it); POST reads
    and wipes the key, then redirects here, where it is shown once in a dialog."""
    reveal = _service_or_404(lambda: key_reveal_get(user=request.user, token=token))
    if request.method == "POST":
        result = key_reveal_consume(user=request.user, token=token)
        if result.plaintext:
            key_flash_set(request, api_key=result.api_key, plaintext=result.plaintext)
        return redirect(request.path)
    if reveal.revealed_at:
        state = "shown"
    elif reveal.secret is not None and reveal.expires_at > timezone.now() and reveal.api_key.is_usable():
        state = "ready"
    else:
        state = "expired"
    return render(request, "accounts/key_reveal.html", {"api_key": reveal.api_key, "state": state})


@sensitive_post_parameters("key")
@login_required
@require_http_methods(["GET", "POST"])
def profile(request):
    """The account (time zone), the current workspace's own provider keys (owners and admins)
    and, for staff, the operator's global keys."""
    ctx = page_context_get(request)
    time_zone_form = TimeZoneForm(initial={"time_zone": request.user.time_zone})
    if request.method == "POST" and request.POST.get("form") == TimeZoneForm.FORM_NAME:
        time_zone_form = TimeZoneForm(request.POST)
        if time_zone_form.is_valid():
            _time_zone_save(request, time_zone_form.cleaned_data["time_zone"])
            return redirect(reverse("accounts:profile"))
    elif request.method == "POST":
        form = ProviderKeyForm(request.POST)
        if form.is_valid():
            _provider_key_change(request, ctx, form)
        else:
            messages.error(request, _("Choose a known provider."))
        return redirect(reverse("accounts:profile"))
    # The template shows the workspace's keys to roles with provider_keys.read, the global ones
    # to staff; without that permission nothing of the workspace's is even read.
    statuses = provider_key_status_list(workspace=ctx.workspace if ctx.can("provider_keys.read") else None)
    context = _workspace_template_context(
        ctx, statuses=statuses, is_staff=request.user.is_staff, time_zone_form=time_zone_form
    )
    status = 400 if time_zone_form.is_bound else 200  # bound here only when it did not validate
    return render(request, "accounts/profile.html", context, status=status)


def _time_zone_save(request, time_zone: str) -> None:
    """Store the profile's zone (one column: nothing else of the user is written back)."""
    request.user.time_zone = time_zone
    request.user.save(update_fields=["time_zone"])
    if time_zone:
        messages.success(request, _("Times are now shown in %(zone)s.") % {"zone": time_zone})
    else:
        messages.success(request, _("Times now follow your browser's time zone."))


def _provider_key_change(request, ctx: WorkspaceContext, form: ProviderKeyForm) -> None:
    scope = form.cleaned_data["scope"]
    if scope == ProviderCredential.Scope.GLOBAL:
        if not request.user.is_staff:
            raise PermissionDenied("Only staff can change global provider keys.")
        owner = None
        removed, saved = (
            _("Global %(provider)s key removed."),
            _("Global %(provider)s key saved (%(masked)s)."),
        )
    else:
        ctx.require_page("provider_keys.manage")
        owner = ctx.workspace
        removed, saved = (
            _("Workspace %(provider)s key removed."),
            _("Workspace %(provider)s key saved (%(masked)s)."),
        )
    provider = form.cleaned_data["provider"]
    try:
        if form.cleaned_data["action"] == ProviderKeyForm.ACTION_DELETE:
            provider_credential_delete(
                scope=scope, provider=provider, workspace=owner, actor=request.user, request=request
            )
            messages.success(request, removed % {"provider": provider})
        else:
            if scope == ProviderCredential.Scope.GLOBAL:  # the provider is asked first
                provider_key_verify(provider=provider, secret=form.cleaned_data["key"])
            credential = provider_credential_set(
                scope=scope,
                provider=provider,
                secret=form.cleaned_data["key"],
                workspace=owner,
                actor=request.user,
                request=request,
            )
            messages.success(request, saved % {"provider": provider, "masked": credential.masked})
    except ApiError as error:
        messages.error(request, error.message)


@never_cache
def email_verify(request, token: str):
    """The link from the confirmation email: confirms the address, then on to the dashboard."""
    try:
        email_verify_service(token=token)
    except ApiError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("Your email address is confirmed."))
    return redirect("accounts:dashboard" if request.user.is_authenticated else "accounts:login")


@login_required
@require_POST
def email_verification_resend(request):
    """Send the confirmation link again (the profile page and the dashboard's reminder)."""
    email_verification_send(user=request.user)
    messages.success(
        request, _("We sent a new confirmation link to %(email)s.") % {"email": request.user.email}
    )
    return redirect(_back(request))
