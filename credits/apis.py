"""Credits API: parse → service/selector → serialize. Session, token or ``Bearer sk_agentai_…``.

Every endpoint acts on the request's workspace (``accounts.tenancy``: a proxy key's own
workspace, else the ``X-Workspace`` header, else the personal one) and names the action its
role needs in ``permission_required`` (403 ``forbidden`` with ``required_role`` otherwise).
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.tenancy import workspace_context_get
from core.exceptions import ApiError
from core.schema import error_responses, schema_named

from .selectors import (
    auto_top_up_get,
    credit_balance_get,
    credit_ledger_entry_get,
    credit_ledger_list,
    credit_pack_public_list,
    credit_upsell_get,
    endpoint_cost_get,
)
from .services import InsufficientCredits, auto_top_up_update, credit_consume, credit_pack_checkout_start


def credit_insufficient_error(*, workspace, cost: int, endpoint: str = "") -> ApiError:
    """The 402 body: balance, cost, the packs to buy and where to buy them."""
    upsell = credit_upsell_get(workspace=workspace)
    return ApiError(
        "insufficient_credits",
        f"Insufficient credits: this call costs {cost}, {upsell['available']} available.",
        cost=cost,
        endpoint=endpoint or None,
        **upsell,
    )


class EndpointInputSerializer(serializers.Serializer):
    endpoint = serializers.CharField(max_length=200)
    units = serializers.IntegerField(min_value=0, max_value=10**9, required=False, default=0)


def _workspace_for(request, view):
    """The request's workspace once its role may do the view's ``permission_required``."""
    context = workspace_context_get(request)
    context.require(view.permission_required)
    return context.workspace


@schema_named
class CreditBalanceApi(APIView):
    permission_required = "usage.read"

    class OutputSerializer(serializers.Serializer):
        balance = serializers.IntegerField()
        available = serializers.IntegerField()
        isLow = serializers.BooleanField(source="is_low")
        lowThreshold = serializers.IntegerField(source="low_threshold")

    @extend_schema(
        operation_id="credits_balance_get",
        summary="The workspace's credit balance",
        description=(
            "`available` is the balance minus credits held by calls in flight. Every member of the "
            "workspace spends the same credits."
        ),
        tags=["credits"],
        responses={200: OutputSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request):
        balance = credit_balance_get(workspace=_workspace_for(request, self))
        return Response(self.OutputSerializer(balance).data)


class CreditPackListApi(APIView):
    """Public: no authentication, so a stale Bearer header cannot hide the price list."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="credits_packs_list",
        summary="Credit packs for sale",
        tags=["credits"],
        auth=[],
        responses={
            200: inline_serializer(
                name="CreditPack",
                many=True,
                fields={
                    "id": serializers.CharField(),
                    "name": serializers.CharField(),
                    "credits": serializers.IntegerField(),
                    "price_minor": serializers.IntegerField(),  # minor units of `currency`
                    "currency": serializers.CharField(),
                    # Chargily Pay price in DZD centimes; null when not sold in DZD
                    "price_dzd_minor": serializers.IntegerField(allow_null=True),
                    # major units of `currency` per credit, e.g. "0.19" or "0.139"
                    "price_per_credit": serializers.DecimalField(max_digits=12, decimal_places=3),
                    # the lowest price per credit in its currency (none when it is the only pack)
                    "best_value": serializers.BooleanField(),
                },
            ),
            **error_responses(),
        },
    )
    def get(self, request):
        return Response(credit_pack_public_list())


class CreditTransactionPagination(CursorPagination):
    ordering = "-id"
    page_size = 50
    max_page_size = 200
    page_size_query_param = "limit"


class LedgerEntryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    amount = serializers.IntegerField()
    balanceAfter = serializers.IntegerField(source="balance_after")
    endpoint = serializers.CharField()
    reference = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")


class CreditTransactionListApi(APIView):
    permission_required = "usage.read"
    OutputSerializer = LedgerEntryOutputSerializer

    @extend_schema(
        operation_id="credits_transactions_list",
        summary="The workspace's credit ledger, newest first",
        description="Cursor-paginated: follow `next`. A forged cursor answers 400.",
        tags=["credits"],
        parameters=[
            OpenApiParameter("cursor", OpenApiTypes.STR, description="Opaque cursor from `next`/`previous`."),
            OpenApiParameter("limit", OpenApiTypes.INT, description="Page size (default 50, at most 200)."),
        ],
        responses={
            200: inline_serializer(
                name="CreditTransactionPage",
                fields={
                    "next": serializers.URLField(allow_null=True),
                    "previous": serializers.URLField(allow_null=True),
                    "results": LedgerEntryOutputSerializer(many=True),
                },
            ),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request):
        workspace = _workspace_for(request, self)
        paginator = CreditTransactionPagination()
        try:
            page = paginator.paginate_queryset(credit_ledger_list(workspace=workspace), request, view=self)
        except NotFound as exc:  # DRF's answer to a forged cursor; it is bad input, not a 404
            raise ApiError("invalid_request", "Invalid cursor.", param="cursor") from exc
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)


class CreditTransactionDetailApi(APIView):
    permission_required = "usage.read"
    OutputSerializer = LedgerEntryOutputSerializer

    @extend_schema(
        operation_id="credits_transactions_get",
        summary="One entry of the workspace's credit ledger",
        description="Another workspace's entry answers 404.",
        tags=["credits"],
        responses={200: LedgerEntryOutputSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request, entry_id: int):
        entry = credit_ledger_entry_get(workspace=_workspace_for(request, self), entry_id=entry_id)
        if entry is None:
            raise ApiError("not_found", "No such transaction.")
        return Response(self.OutputSerializer(entry).data)


@schema_named
class CreditCheckApi(APIView):
    permission_required = "usage.read"
    InputSerializer = EndpointInputSerializer

    class OutputSerializer(serializers.Serializer):
        allowed = serializers.BooleanField()
        cost = serializers.IntegerField()
        balance = serializers.IntegerField()

    @extend_schema(
        operation_id="credits_check",
        summary="Would a call of this endpoint be covered?",
        description="Charges nothing. 400 for an unknown endpoint; 402 (with packs to buy) when not covered.",
        tags=["credits"],
        request=EndpointInputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401, 402, 403, 404, 413, 415)},
    )
    def post(self, request):
        workspace = _workspace_for(request, self)
        header = request.headers.get("Idempotency-Key")
        data = self.InputSerializer(data=request.data, context={"idempotency_header": header})
        data.is_valid(raise_exception=True)
        endpoint = data.validated_data["endpoint"]
        cost_row = endpoint_cost_get(endpoint=endpoint)
        if cost_row is None:
            raise ApiError("invalid_request", f"Unknown endpoint: {endpoint}", param="endpoint")
        cost = cost_row.cost_for(data.validated_data["units"])
        balance = credit_balance_get(workspace=workspace)
        if balance.available < cost:
            raise credit_insufficient_error(workspace=workspace, cost=cost, endpoint=endpoint)
        return Response(
            self.OutputSerializer({"allowed": True, "cost": cost, "balance": balance.balance}).data
        )


IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9._:\-]{1,100}$"


@schema_named
class CreditConsumeApi(APIView):
    # Spending is what a proxy key does: every role may, so the table's every-role action is
    # named (it has no narrower one). With a key, the key's own workspace pays.
    permission_required = "usage.read"

    class InputSerializer(EndpointInputSerializer):
        """The key comes in the body or in Stripe's ``Idempotency-Key`` header (``context``)."""

        idempotencyKey = serializers.RegexField(IDEMPOTENCY_KEY_PATTERN, max_length=100, required=False)

        def validate(self, attrs):
            attrs = super().validate(attrs)
            header = self.context.get("idempotency_header")
            body = attrs.get("idempotencyKey")
            if header is not None:
                field = serializers.RegexField(IDEMPOTENCY_KEY_PATTERN, max_length=100)
                try:
                    header = field.run_validation(header)
                except serializers.ValidationError as exc:
                    raise serializers.ValidationError({"idempotencyKey": exc.detail}) from None
                if body is not None and body != header:
                    raise serializers.ValidationError(
                        {"idempotencyKey": ["Differs from the Idempotency-Key header; send one."]}
                    )
                attrs["idempotencyKey"] = header
            elif body is None:
                raise serializers.ValidationError(
                    {"idempotencyKey": ["This field is required (or send the Idempotency-Key header)."]}
                )
            return attrs

    class OutputSerializer(serializers.Serializer):
        charged = serializers.IntegerField()
        balanceAfter = serializers.IntegerField(source="balance_after")
        replayed = serializers.BooleanField()

    @extend_schema(
        operation_id="credits_consume",
        summary="Charge the credits of one endpoint call",
        description=(
            "Charges the workspace's shared credits (a proxy key's own workspace). "
            "Idempotent on `idempotencyKey` (or the `Idempotency-Key` header) within the workspace: "
            "a replay answers the first result with `replayed: true`; "
            "the same key for another endpoint answers 409. 402 when the balance does not cover it."
        ),
        tags=["credits"],
        request=InputSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=False,
                description="Instead of `idempotencyKey` in the body (both: they must match).",
            )
        ],
        responses={200: OutputSerializer, **error_responses(400, 401, 402, 403, 404, 409, 413, 415)},
    )
    def post(self, request):
        workspace = _workspace_for(request, self)
        header = request.headers.get("Idempotency-Key")
        data = self.InputSerializer(data=request.data, context={"idempotency_header": header})
        data.is_valid(raise_exception=True)
        endpoint = data.validated_data["endpoint"]
        try:
            result = credit_consume(
                workspace=workspace,
                endpoint=endpoint,
                idempotency_key=data.validated_data["idempotencyKey"],
                units=data.validated_data["units"],
                reference=getattr(request, "request_id", ""),
            )
        except InsufficientCredits as exc:
            raise credit_insufficient_error(workspace=workspace, cost=exc.cost, endpoint=endpoint) from exc
        return Response(self.OutputSerializer(result).data)


@schema_named
class CreditBuyApi(APIView):
    permission_required = "billing.manage"

    class InputSerializer(serializers.Serializer):
        packId = serializers.CharField(max_length=40)
        # Checked by billing against CHECKOUT_REDIRECT_HOSTS (no open redirect).
        successUrl = serializers.CharField(max_length=2000)
        cancelUrl = serializers.CharField(max_length=2000)
        # "chargily": pay the pack's DZD price with Chargily Pay (CIB / EDAHABIA).
        gateway = serializers.ChoiceField(choices=["stripe", "chargily"], default="stripe")

    class OutputSerializer(serializers.Serializer):
        checkoutUrl = serializers.CharField(source="checkout_url")
        sessionId = serializers.CharField(source="session_id")

    @extend_schema(
        operation_id="credits_buy",
        summary="Start a checkout for a credit pack",
        description=(
            "The credits go to the workspace; its owners, admins and billing members may buy "
            "(403 `forbidden` with `required_role` otherwise). "
            "`gateway: chargily` pays the pack's DZD price with Chargily Pay (400 when it has none). "
            "Redirect URLs must be on CHECKOUT_REDIRECT_HOSTS."
        ),
        tags=["credits"],
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401, 403, 404, 413, 415, 502, 503)},
    )
    def post(self, request):
        workspace = _workspace_for(request, self)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = credit_pack_checkout_start(
            workspace=workspace,
            actor=request.user,
            pack_code=data.validated_data["packId"],
            success_url=data.validated_data["successUrl"],
            cancel_url=data.validated_data["cancelUrl"],
            gateway=data.validated_data["gateway"],
        )
        return Response(self.OutputSerializer(session).data)


class _StrictIntegerField(serializers.IntegerField):
    """An integer, not a string or a float that looks like one."""

    default_error_messages = {"invalid": "A whole number is required."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class _StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "true or false is required."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


@schema_named
class CreditAutoTopUpApi(APIView):
    """The workspace's auto top-up: read with ``billing.read``, change with ``billing.manage``."""

    permission_required = {"get": "billing.read", "patch": "billing.manage"}

    class InputSerializer(serializers.Serializer):
        enabled = _StrictBooleanField(required=False)
        packId = serializers.CharField(max_length=40, required=False)
        thresholdCredits = _StrictIntegerField(required=False, min_value=1, max_value=10**12)
        maxPerMonth = _StrictIntegerField(required=False, min_value=1, max_value=31)

    class OutputSerializer(serializers.Serializer):
        enabled = serializers.BooleanField(source="is_enabled")
        packId = serializers.CharField(source="pack_code", allow_null=True)
        thresholdCredits = serializers.IntegerField(source="threshold_credits", allow_null=True)
        maxPerMonth = serializers.IntegerField(source="max_per_month")
        usedThisMonth = serializers.IntegerField(source="used_this_month")
        disabledReason = serializers.CharField(source="disabled_reason")
        lastFailureAt = serializers.DateTimeField(source="last_failure_at", allow_null=True)
        hasSavedCard = serializers.BooleanField(source="has_saved_card")

    @extend_schema(
        operation_id="credits_auto_top_up_get",
        summary="The workspace's auto top-up",
        tags=["credits"],
        responses={200: OutputSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request):
        context = workspace_context_get(request)
        context.require(self.permission_required["get"])
        return Response(self.OutputSerializer(auto_top_up_get(workspace=context.workspace)).data)

    @extend_schema(
        operation_id="credits_auto_top_up_update",
        summary="Change the workspace's auto top-up",
        description=(
            "When the available balance falls below `thresholdCredits`, buy `packId` with the card "
            "saved by the last pack bought by card, at most `maxPerMonth` times a UTC month. Turning "
            "it on needs such a purchase (400 `param: enabled`). A declined charge turns it off "
            "(`disabledReason`) and emails the billing contacts. Owners, admins and billing members "
            "may change it (403 `forbidden` otherwise); unknown fields are a 400."
        ),
        tags=["credits"],
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def patch(self, request):
        context = workspace_context_get(request)
        context.require(self.permission_required["patch"])
        if not isinstance(request.data, dict):
            raise ApiError("invalid_request", "The body must be a JSON object.")
        unknown = set(request.data) - set(self.InputSerializer().fields)
        if unknown:
            raise ApiError(
                "invalid_request", f"Unknown field: {sorted(unknown)[0]}.", param=sorted(unknown)[0]
            )
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        auto_top_up_update(
            workspace=context.workspace,
            actor=context.user,
            is_enabled=values.get("enabled"),
            pack_code=values.get("packId"),
            threshold_credits=values.get("thresholdCredits"),
            max_per_month=values.get("maxPerMonth"),
            request=request,
        )
        return Response(self.OutputSerializer(auto_top_up_get(workspace=context.workspace)).data)
