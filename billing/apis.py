"""Billing API: parse → service/selector → serialize.

Every endpoint but the public plan list and the webhooks acts on the request's workspace
(``accounts.tenancy``: a proxy key's own workspace, else the ``X-Workspace`` header, else the
personal one) and names the action its role needs in ``permission_required``: ``billing.manage``
to start a checkout or open the portal, ``billing.read`` to read the subscription (403
``forbidden`` with ``required_role`` otherwise; 404 for a workspace the caller is not in).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.tenancy import WorkspaceContext, workspace_context_get
from core.schema import error_responses, schema_named
from core.time import isoformat_z

from .gateways.stripe import billing_portal_session_start
from .models import Gateway
from .selectors import plan_for_workspace_get, plan_list_public, subscription_get, subscription_status_get
from .services import (
    plan_chargily_checkout_start,
    plan_checkout_start,
    webhook_receive,
)

logger = logging.getLogger("tollgate.billing")

# What both webhooks answer with 200 (``status`` is absent on a duplicate that was done already).
WEBHOOK_RECEIPT = inline_serializer(
    name="WebhookReceipt",
    fields={
        "received": serializers.BooleanField(),
        "status": serializers.CharField(required=False),
        "duplicate": serializers.BooleanField(),
    },
)


def _context_for(request, view) -> WorkspaceContext:
    """The request's workspace context once its role may do the view's ``permission_required``."""
    context = workspace_context_get(request)
    context.require(view.permission_required)
    return context


class PlanOutputSerializer(serializers.Serializer):
    """The plan shape shared by the plans list and the subscription."""

    class QuotaSerializer(serializers.Serializer):
        meter = serializers.CharField()
        period = serializers.CharField()
        limit = serializers.IntegerField(allow_null=True)  # null = unlimited, 0 = not included

    code = serializers.CharField()
    name = serializers.CharField()
    price_minor = serializers.IntegerField()
    currency = serializers.CharField()
    interval = serializers.CharField()
    rate_limit_per_minute = serializers.IntegerField()
    quotas = QuotaSerializer(many=True, source="quotas.all")


class PlanListApi(APIView):
    """Public: no authentication, so a stale Bearer header cannot hide the price list."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="billing_plans_list",
        summary="Public plans with their quotas",
        tags=["billing"],
        auth=[],
        responses={200: PlanOutputSerializer(many=True), **error_responses()},
    )
    def get(self, request):
        return Response(PlanOutputSerializer(plan_list_public(), many=True).data)


@schema_named
class CheckoutStartApi(APIView):
    permission_required = "billing.manage"

    class InputSerializer(serializers.Serializer):
        planId = serializers.CharField(max_length=40)
        successUrl = serializers.CharField(max_length=2000)
        cancelUrl = serializers.CharField(max_length=2000)

    class OutputSerializer(serializers.Serializer):
        checkoutUrl = serializers.CharField(source="checkout_url")
        sessionId = serializers.CharField(source="session_id")

    @extend_schema(
        operation_id="billing_checkout_start",
        summary="Start a Stripe Checkout for a plan of the workspace",
        description=(
            "Needs a role with `billing.manage` (403 otherwise). Redirect URLs must be on "
            "CHECKOUT_REDIRECT_HOSTS (400). An existing subscription of the workspace answers 409 "
            "(change plans in the portal); Stripe failures 502; no Stripe and no simulated "
            "checkout 503."
        ),
        tags=["billing"],
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401, 403, 409, 413, 415, 502, 503)},
    )
    def post(self, request):
        context = _context_for(request, self)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = plan_checkout_start(
            workspace=context.workspace,
            actor=context.user,
            plan_code=data["planId"],
            success_url=data["successUrl"],
            cancel_url=data["cancelUrl"],
        )
        return Response(self.OutputSerializer(result).data)


@schema_named
class SubscriptionApi(APIView):
    permission_required = "billing.read"

    class OutputSerializer(serializers.Serializer):
        plan = PlanOutputSerializer()
        status = serializers.CharField()
        currentPeriodEnd = serializers.SerializerMethodField()
        cancelAtPeriodEnd = serializers.BooleanField(source="cancel_at_period_end")

        def get_currentPeriodEnd(self, obj) -> str | None:
            return isoformat_z(obj["current_period_end"]) if obj["current_period_end"] else None

    @extend_schema(
        operation_id="billing_subscription_get",
        summary="The workspace's plan and subscription",
        description=(
            "Without a paid subscription: the free plan, `active`, no period end. Needs a role "
            "with `billing.read`."
        ),
        tags=["billing"],
        responses={200: OutputSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request):
        workspace = _context_for(request, self).workspace
        plan = plan_for_workspace_get(workspace=workspace)
        subscription = subscription_get(workspace=workspace)
        if subscription is not None and subscription.plan_id == plan.pk:
            data = {
                "plan": plan,
                "status": subscription.status,
                "current_period_end": subscription.current_period_end,
                "cancel_at_period_end": subscription.cancel_at_period_end,
            }
        else:
            data = {
                "plan": plan,
                "status": "active",
                "current_period_end": None,
                "cancel_at_period_end": False,
            }
        return Response(self.OutputSerializer(data).data)


@schema_named
class PortalApi(APIView):
    permission_required = "billing.manage"

    class InputSerializer(serializers.Serializer):
        returnUrl = serializers.CharField(max_length=2000, required=False)

    class OutputSerializer(serializers.Serializer):
        url = serializers.CharField()

    @extend_schema(
        operation_id="billing_portal_start",
        summary="Open the Stripe customer portal",
        description=(
            "The workspace's billing account; needs a role with `billing.manage`. 400 without a "
            "billing account or with a returnUrl off CHECKOUT_REDIRECT_HOSTS."
        ),
        tags=["billing"],
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401, 403, 404, 413, 415, 502, 503)},
    )
    def post(self, request):
        workspace = _context_for(request, self).workspace
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return_url = serializer.validated_data.get("returnUrl") or f"{settings.SITE_URL}/dashboard/"
        url = billing_portal_session_start(workspace=workspace, return_url=return_url)
        return Response(self.OutputSerializer({"url": url}).data)


class StripeWebhookApi(APIView):
    """Stripe → us. No session or key: the signature is the authentication.

    Verified events are stored first (unique event id), then processed. Answers:
    200 processed, ignored or duplicate; 400 bad signature/timestamp/body; 503 when
    processing failed — the event stays stored as ``failed`` and Stripe's retry (or the admin
    "reprocess" action) runs it again.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="billing_stripe_webhook",
        summary="Stripe webhook (signed with the Stripe-Signature header)",
        description=(
            "A Stripe event. 400 on a missing/invalid signature or stale timestamp "
            "(`invalid_signature`); 503 when stored but not processed (Stripe retries)."
        ),
        tags=["webhooks"],
        auth=[],
        request=OpenApiTypes.OBJECT,
        responses={200: WEBHOOK_RECEIPT, **error_responses(400, 413, 503)},
    )
    def post(self, request):
        return Response(
            webhook_receive(gateway=Gateway.STRIPE, payload=request.body, headers=request.headers)
        )


# --- Chargily Pay (DZD) ------------------------------------------------------------------------


@schema_named
class ChargilySubscribeApi(APIView):
    """``POST /payment/subscribe/{plan_code}``: one period of a plan, paid in DZD."""

    permission_required = "billing.manage"

    class InputSerializer(serializers.Serializer):
        # Checked against CHECKOUT_REDIRECT_HOSTS; default to our own outcome pages.
        successUrl = serializers.CharField(max_length=2000, required=False)
        failureUrl = serializers.CharField(max_length=2000, required=False)

    class OutputSerializer(serializers.Serializer):
        checkout_url = serializers.CharField()
        amount = serializers.IntegerField()  # whole DZD, as Chargily charges it
        currency = serializers.CharField()
        reference = serializers.CharField(source="session_id")

    @extend_schema(
        operation_id="payment_chargily_subscribe",
        summary="Pay one period of a plan in DZD with Chargily Pay",
        description=(
            "Opens a Chargily checkout (CIB / EDAHABIA) for the plan's DZD price, for the workspace; "
            "needs a role with `billing.manage`. 400 for an unknown plan or one without a DZD "
            "price; 409 while another subscription is in force."
        ),
        tags=["payment"],
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401, 403, 404, 409, 413, 415, 502, 503)},
    )
    def post(self, request, plan_code: str):
        context = _context_for(request, self)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = plan_chargily_checkout_start(
            workspace=context.workspace,
            actor=context.user,
            plan_code=plan_code,
            success_url=data.get("successUrl")
            or settings.SITE_URL + reverse("billing:success") + "?session_id={CHECKOUT_SESSION_ID}",
            failure_url=data.get("failureUrl") or settings.SITE_URL + reverse("billing:cancel"),
        )
        return Response(self.OutputSerializer(result).data)


@schema_named
class SubscriptionStatusApi(APIView):
    """``GET /payment/subscription/status``: the workspace's plan in force, for either gateway."""

    permission_required = "billing.read"

    class OutputSerializer(serializers.Serializer):
        tier = serializers.CharField()
        is_active = serializers.BooleanField()
        expires_at = serializers.SerializerMethodField()
        gateway = serializers.CharField(allow_null=True)

        def get_expires_at(self, obj) -> str | None:
            return isoformat_z(obj["expires_at"]) if obj["expires_at"] else None

    @extend_schema(
        operation_id="payment_subscription_status",
        summary="The workspace's plan in force, for either gateway",
        description="Needs a role with `billing.read`.",
        tags=["payment"],
        responses={200: OutputSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request):
        workspace = _context_for(request, self).workspace
        return Response(self.OutputSerializer(subscription_status_get(workspace=workspace)).data)


class ChargilyWebhookApi(APIView):
    """Chargily → us. No session or key: the ``signature`` header (HMAC-SHA256 of the raw
    body with CHARGILY_SECRET_KEY) is the authentication.

    Answers: 200 processed, ignored or duplicate; 400 missing/invalid signature or body;
    503 when processing failed — the event stays stored as ``failed`` for Chargily's retry or
    the admin "reprocess" action.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes: list = []  # the raw body is what is signed; never parse before verifying

    @extend_schema(
        operation_id="payment_chargily_webhook",
        summary="Chargily Pay webhook (signed with the signature header)",
        description=(
            "A Chargily event. 400 on a missing/invalid signature or a body that is not a Chargily "
            "event (`invalid_signature`); 503 when stored but not processed (Chargily retries)."
        ),
        tags=["webhooks"],
        auth=[],
        request={"application/json": OpenApiTypes.OBJECT},
        responses={200: WEBHOOK_RECEIPT, **error_responses(400, 413, 503)},
    )
    def post(self, request):
        return Response(
            webhook_receive(gateway=Gateway.CHARGILY, payload=request.body, headers=request.headers)
        )
