"""The /notifications/ page (billing readers; billing managers change it): the alert
thresholds, the alerts that hold now, and a link to the webhook endpoints. The /webhooks/ page
(owners and admins): endpoints, add one (its secret shown once after the redirect), each
endpoint's delivery log, and the test, rotate, enable/disable and delete buttons. Every form
posts to its own URL and redirects (Post/Redirect/Get)."""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from accounts.tenancy import page_context_get
from core.exceptions import ApiError

from .selectors import (
    notification_settings_get,
    threshold_state_open_list,
    webhook_delivery_list,
    webhook_endpoint_get,
    webhook_endpoint_list,
)
from .services import (
    EVENT_TYPES,
    notification_settings_update,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate,
    webhook_endpoint_test,
    webhook_endpoint_update,
)

SECRET_SESSION_KEY = "notifications.new_secret"
SUBSCRIBABLE = [event for event in EVENT_TYPES if event != "webhook.test"]


def webhook_page(back: str = "notifications:page", **methods: str):
    """A webhooks or notifications page: the method's action (``accounts.roles``) is required
    in the chosen workspace; the view gets the ``WorkspaceContext``; a refused change is a
    message on ``back``. Declared for the permission sweeps."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, **kwargs):
            method = request.method.lower()
            if method not in methods:
                return HttpResponseNotAllowed([name.upper() for name in methods])
            ctx = page_context_get(request, methods[method])
            try:
                return view(request, ctx, **kwargs)
            except ApiError as error:
                if error.status_code == 404:
                    raise Http404(error.message) from None
                messages.error(request, error.message)
                return redirect(back)

        guarded = login_required(wrapper)
        guarded.permission_required = dict(methods)
        return guarded

    return decorate


def _flash_secret(request, endpoint, secret: str, *, rotated: bool) -> None:
    request.session[SECRET_SESSION_KEY] = {
        "id": endpoint.pk,
        "url": endpoint.url,
        "secret": secret,
        "rotated": rotated,
    }


@webhook_page(get="webhooks.read", post="webhooks.manage")
def webhooks_page(request, ctx):
    if request.method == "POST":
        events = request.POST.getlist("events")
        endpoint, secret = webhook_endpoint_create(
            workspace=ctx.workspace,
            actor=ctx.user,
            url=request.POST.get("url", "").strip(),
            events=events,
            description=request.POST.get("description", "").strip(),
            request=request,
        )
        _flash_secret(request, endpoint, secret, rotated=False)
        return redirect("notifications:page")
    endpoints = list(webhook_endpoint_list(workspace=ctx.workspace))
    selected = request.GET.get("endpoint")
    current = None
    deliveries = []
    if selected and selected.isdigit():
        current = webhook_endpoint_get(workspace=ctx.workspace, endpoint_id=int(selected))
        deliveries = webhook_delivery_list(workspace=ctx.workspace, endpoint_id=current.pk)
    context = {
        "workspace_context": ctx,
        "perms_ws": ctx.permissions,
        "endpoints": endpoints,
        "current": current,
        "deliveries": deliveries,
        "event_types": SUBSCRIBABLE,
        "new_secret": request.session.pop(SECRET_SESSION_KEY, None),
    }
    return render(request, "notifications/webhooks.html", context)


@webhook_page(post="webhooks.manage")
def webhook_test(request, ctx, endpoint_id: int):
    webhook_endpoint_test(workspace=ctx.workspace, endpoint_id=endpoint_id, actor=ctx.user)
    messages.success(request, _("Test event queued: see the delivery log."))
    return redirect(f"/webhooks/?endpoint={endpoint_id}")


@webhook_page(post="webhooks.manage")
def webhook_rotate(request, ctx, endpoint_id: int):
    endpoint, secret = webhook_endpoint_rotate(
        workspace=ctx.workspace, endpoint_id=endpoint_id, actor=ctx.user, request=request
    )
    _flash_secret(request, endpoint, secret, rotated=True)
    return redirect("notifications:page")


@webhook_page(post="webhooks.manage")
def webhook_toggle(request, ctx, endpoint_id: int):
    enabled = request.POST.get("enabled") == "1"
    webhook_endpoint_update(
        workspace=ctx.workspace, endpoint_id=endpoint_id, actor=ctx.user, enabled=enabled, request=request
    )
    messages.success(request, _("Endpoint enabled.") if enabled else _("Endpoint disabled."))
    return redirect("notifications:page")


@webhook_page(post="webhooks.manage")
def webhook_delete(request, ctx, endpoint_id: int):
    webhook_endpoint_delete(workspace=ctx.workspace, endpoint_id=endpoint_id, actor=ctx.user, request=request)
    messages.success(request, _("Endpoint deleted."))
    return redirect("notifications:page")


def _percents_parse(text: str, *, param: str) -> list[int]:
    parts = [part.strip().rstrip("%").strip() for part in text.split(",") if part.strip()]
    if not all(part.isdigit() for part in parts):
        # A page's message (this view is no API): in the reader's language.
        raise ApiError("invalid_request", _("Percents are whole numbers separated by commas."), param=param)
    return [int(part) for part in parts]


@webhook_page(back="notifications:settings-page", get="billing.read", post="billing.manage")
def notifications_page(request, ctx):
    if request.method == "POST":
        low = request.POST.get("credits_low_balance", "").strip()
        if low and not low.isdigit():
            raise ApiError(
                "invalid_request",
                _("The low-balance threshold is a whole number of credits."),
                param="credits_low_balance",
            )
        notification_settings_update(
            workspace=ctx.workspace,
            actor=ctx.user,
            quota_thresholds=_percents_parse(
                request.POST.get("quota_thresholds", ""), param="quota_thresholds"
            ),
            limit_thresholds=_percents_parse(
                request.POST.get("limit_thresholds", ""), param="limit_thresholds"
            ),
            credits_low_balance=int(low) if low else None,
            email_enabled=request.POST.get("email_enabled") == "on",
            request=request,
        )
        messages.success(request, _("Alert thresholds saved."))
        return redirect("notifications:settings-page")
    can_see_webhooks = ctx.can("webhooks.read")
    context = {
        "workspace_context": ctx,
        "perms_ws": ctx.permissions,
        "thresholds": notification_settings_get(workspace_id=ctx.workspace.pk),
        "open_states": threshold_state_open_list(workspace=ctx.workspace),
        "endpoints": list(webhook_endpoint_list(workspace=ctx.workspace)) if can_see_webhooks else None,
        "event_types": SUBSCRIBABLE,
    }
    return render(request, "notifications/notifications.html", context)
