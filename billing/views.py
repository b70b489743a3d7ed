"""Billing pages: pricing, checkout outcome, and the offline simulated checkout and portal.

Signed-in pages act on the current workspace (``accounts.tenancy``: the switcher's choice, else
the personal one): choosing a plan and the portal need ``billing.manage``, the portal's
invoices and receipts ``billing.read`` (Django's 403 page otherwise). The pricing page shows
every member the plan, and the buttons only to those who may use them (``perms_ws``).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.test import RequestFactory
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts.tenancy import page_context_get
from core.exceptions import ApiError

from .apis import ChargilyWebhookApi, StripeWebhookApi
from .gateways.chargily import chargily_simulated_enabled, chargily_simulated_event_build
from .gateways.stripe import (
    billing_portal_session_start,
    simulated_checkout_enabled,
    simulated_checkout_event_build,
)
from .gateways.stripe_simulated import stripe_simulated_enabled
from .gateways.stripe_simulated_portal import (
    plan_change_options,
    proration_preview,
    receipts_list,
    simulated_invoices_list,
    simulated_plan_change,
    simulated_portal_subscription_get,
    simulated_subscription_cancel,
    simulated_subscription_resume,
)
from .models import CheckoutSession, Gateway
from .selectors import plan_for_workspace_get, pricing_get, subscription_get
from .services import (
    plan_chargily_checkout_start,
    plan_checkout_start,
    simulated_checkout_cancel,
)

logger = logging.getLogger("tollgate.billing")


def pricing_page(request):
    """One ladder per currency, the comparison table, and the credit packs (rendered by the
    credits app's ``credit_pack_offers`` tag: billing sits below credits and cannot import it).
    Signed in: the current workspace's plan is marked, and its subscription (what the buttons
    depend on) is read for roles that may read billing."""
    context = {"pricing": pricing_get(), "current_plan": None, "subscription": None}
    if request.user.is_authenticated:
        ctx = page_context_get(request)
        can = ctx.permissions
        context.update(
            workspace_context=ctx,
            perms_ws=can,
            current_plan=plan_for_workspace_get(workspace=ctx.workspace),
            subscription=subscription_get(workspace=ctx.workspace) if "billing.read" in can else None,
        )
    return render(request, "billing/pricing.html", context)


@login_required
@require_POST
def plan_upgrade(request, code: str):
    """Start a checkout for ``code`` for the current workspace and send the browser to it:
    Stripe (or simulated), or one period paid in DZD with Chargily Pay when the button says
    ``gateway=chargily`` (the page door to ``POST /payment/subscribe/{plan_code}``)."""
    ctx = page_context_get(request, "billing.manage")
    success_url = settings.SITE_URL + reverse("billing:success") + "?session_id={CHECKOUT_SESSION_ID}"
    cancel_url = settings.SITE_URL + reverse("billing:cancel")
    try:
        if request.POST.get("gateway") == Gateway.CHARGILY:
            result = plan_chargily_checkout_start(
                workspace=ctx.workspace,
                actor=ctx.user,
                plan_code=code,
                success_url=success_url,
                failure_url=cancel_url,
            )
        else:
            result = plan_checkout_start(
                workspace=ctx.workspace,
                actor=ctx.user,
                plan_code=code,
                success_url=success_url,
                cancel_url=cancel_url,
            )
    except ApiError as exc:
        messages.error(request, exc.message)
        return redirect("billing:pricing")
    return redirect(result["checkout_url"])


@login_required
@require_POST
def billing_portal_redirect(request):
    ctx = page_context_get(request, "billing.manage")
    try:
        url = billing_portal_session_start(
            workspace=ctx.workspace, return_url=settings.SITE_URL + reverse("billing:pricing")
        )
    except ApiError as exc:
        messages.error(request, exc.message)
        return redirect("billing:pricing")
    return redirect(url)


def checkout_success_page(request):
    """The checkout's outcome: found among the checkouts of the workspaces the user belongs to
    (whichever the switcher shows now), with the plan of the workspace that paid."""
    checkout = None
    plan = None
    session_id = request.GET.get("session_id", "")
    if request.user.is_authenticated and session_id:
        checkout = (
            CheckoutSession.objects.select_related("workspace")
            .filter(checkout_reference=session_id, workspace__memberships__user=request.user)
            .first()
        )
    if checkout is not None:
        plan = plan_for_workspace_get(workspace=checkout.workspace)
    elif request.user.is_authenticated:
        plan = plan_for_workspace_get(workspace=page_context_get(request).workspace)
    return render(request, "billing/success.html", {"checkout": checkout, "plan": plan})


def checkout_cancel_page(request):
    return render(request, "billing/cancel.html")


def _webhook_deliver(*, payload: bytes, signature: str):
    """Hand a signed event to the webhook view function itself, in process (same code path
    as a delivery from Stripe: signature check, store, process)."""
    webhook_request = RequestFactory().post(
        reverse("billing-api:webhook"),
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature,
    )
    return StripeWebhookApi.as_view()(webhook_request)


@require_http_methods(["GET", "POST"])
def simulated_checkout_page(request, session_id: str):
    """Stand-in for Stripe's hosted page, DEBUG-only, without Stripe. Like Stripe's page it
    needs no login: the unguessable session id identifies the checkout."""
    if not simulated_checkout_enabled():
        raise Http404("Simulated checkout is disabled.")
    checkout = (
        CheckoutSession.objects.select_related("workspace")
        .filter(checkout_reference=session_id, is_simulated=True)
        .first()
    )
    if checkout is None:
        raise Http404("Unknown checkout session.")
    if request.method == "GET":
        return render(request, "billing/simulated_checkout.html", {"checkout": checkout})
    action = request.POST.get("action")
    if action == "cancel":
        simulated_checkout_cancel(checkout=checkout)
        return redirect(checkout.cancel_url)
    if action != "pay":
        return HttpResponseBadRequest("Unknown action.")
    if checkout.status == CheckoutSession.Status.OPEN:
        payload, signature = simulated_checkout_event_build(checkout=checkout)
        response = _webhook_deliver(payload=payload, signature=signature)
        if response.status_code != 200:
            logger.error("simulated checkout: webhook answered %s", response.status_code)
            return render(
                request, "billing/simulated_checkout.html", {"checkout": checkout, "failed": True}, status=502
            )
    elif checkout.status != CheckoutSession.Status.COMPLETE:
        return render(request, "billing/simulated_checkout.html", {"checkout": checkout}, status=409)
    return redirect(checkout.success_url.replace("{CHECKOUT_SESSION_ID}", checkout.checkout_reference))


def _chargily_webhook_deliver(*, payload: bytes, signature: str):
    """Hand a signed event to the Chargily webhook view in process (same code path as a
    delivery from Chargily: signature check, store, process)."""
    webhook_request = RequestFactory().post(
        reverse("billing:chargily-webhook"),
        data=payload,
        content_type="application/json",
        HTTP_SIGNATURE=signature,
    )
    return ChargilyWebhookApi.as_view()(webhook_request)


@require_http_methods(["GET", "POST"])
def chargily_simulated_checkout_page(request, reference: str):
    """Stand-in for Chargily's hosted page (DEBUG only, no CHARGILY_API_KEY). Pay, fail or let
    it expire: each posts a correctly signed event to our own webhook. Like the real page it
    needs no login: the unguessable reference identifies the checkout."""
    if not chargily_simulated_enabled():
        raise Http404("Simulated checkout is disabled.")
    checkout = (
        CheckoutSession.objects.select_related("workspace")
        .filter(checkout_reference=reference, gateway=Gateway.CHARGILY, is_simulated=True)
        .first()
    )
    if checkout is None:
        raise Http404("Unknown checkout.")
    context = {"checkout": checkout, "amount_dzd": checkout.amount_minor // 100}
    if request.method == "GET":
        return render(request, "billing/chargily_simulated_checkout.html", context)
    outcome = request.POST.get("action")
    if outcome not in ("paid", "failed", "expired"):
        return HttpResponseBadRequest("Unknown action.")
    if checkout.status == CheckoutSession.Status.OPEN:
        payload, signature = chargily_simulated_event_build(checkout=checkout, outcome=outcome)
        response = _chargily_webhook_deliver(payload=payload, signature=signature)
        if response.status_code != 200:
            logger.error("simulated chargily checkout: webhook answered %s", response.status_code)
            return render(
                request, "billing/chargily_simulated_checkout.html", {**context, "failed": True}, status=502
            )
        checkout.refresh_from_db(fields=["status"])
    if checkout.status == CheckoutSession.Status.COMPLETE:
        return redirect(checkout.success_url)
    return redirect(checkout.cancel_url)


@login_required
@require_http_methods(["GET", "POST"])
def simulated_portal_page(request):
    """Stand-in for Stripe's customer portal (DEBUG only, without Stripe): the current
    workspace's subscription. GET shows it (``?plan=<code>`` adds the proration preview; needs
    ``billing.read``); each POST (``billing.manage``) delivers the events Stripe's portal would
    cause, then redirects here (Post/Redirect/Get)."""
    if not stripe_simulated_enabled():
        raise Http404("The simulated billing portal is disabled.")
    if request.method == "POST":
        ctx = page_context_get(request, "billing.manage")
        workspace, actor = ctx.workspace, ctx.user
        action = request.POST.get("action")
        try:
            if action == "change":
                preview = simulated_plan_change(
                    workspace=workspace, actor=actor, plan_code=request.POST.get("plan", "")
                )
                messages.success(
                    request, _("The workspace is now on the %(plan)s plan.") % {"plan": preview.plan.name}
                )
            elif action == "cancel":
                row = simulated_subscription_cancel(workspace=workspace, actor=actor)
                messages.success(
                    request,
                    _("The plan ends on %(day)s; it will not renew.")
                    % {"day": f"{row.current_period_end:%Y-%m-%d}"},
                )
            elif action == "resume":
                simulated_subscription_resume(workspace=workspace, actor=actor)
                messages.success(request, _("Your subscription renews again."))
            else:
                return HttpResponseBadRequest("Unknown action.")
        except ApiError as exc:
            messages.error(request, exc.message)
        return redirect("billing:simulated-portal")
    ctx = page_context_get(request, "billing.read")
    subscription = simulated_portal_subscription_get(workspace=ctx.workspace)
    preview = None
    if subscription is not None and request.GET.get("plan"):
        try:
            preview = proration_preview(subscription=subscription, plan_code=request.GET["plan"])
        except ApiError as exc:
            messages.error(request, exc.message)
    context = {
        "workspace_context": ctx,
        "perms_ws": ctx.permissions,
        "subscription": subscription,
        "options": plan_change_options(subscription=subscription) if subscription else [],
        "preview": preview,
        "invoices": simulated_invoices_list(workspace=ctx.workspace),
        "receipts": receipts_list(workspace=ctx.workspace),
    }
    return render(request, "billing/simulated_portal.html", context)
