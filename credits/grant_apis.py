"""Credit lots over the API: the operator's grants of promotional credits (staff only) and the
workspace's own lots (what is left of each and when it expires)."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Workspace
from accounts.tenancy import workspace_context_get
from core.exceptions import ApiError
from core.schema import error_responses, schema_named

from .services import credit_grant, credit_lots_get


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, nothing that merely converts to one (``"5"``, ``5.0``, ``true``)."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class CreditLotOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    credits = serializers.IntegerField(source="amount")
    remaining = serializers.IntegerField()
    expiresAt = serializers.DateTimeField(source="expires_at", allow_null=True)
    reason = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")


@schema_named
class CreditGrantCreateApi(APIView):
    """``POST /api/credits/grants``: an operator grants promotional credits to a workspace."""

    # Operators only: a session or DRF token of a staff user, never a workspace's proxy key.
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        workspace_id = StrictIntegerField(min_value=1)
        credits = StrictIntegerField(min_value=1, max_value=1_000_000)
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
        reason = serializers.CharField(max_length=500)

        def validate_expires_at(self, value):
            if value is not None and value <= timezone.now():
                raise serializers.ValidationError("The expiry must be in the future.")
            return value

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField(source="lot.id")
        workspace_id = serializers.IntegerField()
        kind = serializers.CharField(source="lot.kind")
        credits = serializers.IntegerField(source="amount")
        expires_at = serializers.DateTimeField(source="lot.expires_at", allow_null=True)
        reason = serializers.CharField(source="lot.reason")
        ledger_entry_id = serializers.IntegerField(source="id")
        balance_after = serializers.IntegerField()

    @extend_schema(
        operation_id="credits_grants_create",
        summary="Grant promotional credits to a workspace (staff only)",
        description=(
            "Opens a promotional lot, spent before paid credits (earliest expiry first); what is "
            "left at `expires_at` expires. An `Idempotency-Key` header makes a retry grant once."
        ),
        tags=["credits"],
        request=InputSerializer,
        responses={201: OutputSerializer, **error_responses(400, 401, 403, 413)},
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        workspace = Workspace.objects.filter(pk=data.validated_data["workspace_id"]).first()
        if workspace is None:
            raise ApiError("invalid_request", "No such workspace.", param="workspace_id")
        header_key = request.headers.get("Idempotency-Key", "").strip()[:100]
        entry = credit_grant(
            workspace=workspace,
            amount=data.validated_data["credits"],
            admin_user=request.user,
            reason=data.validated_data["reason"],
            expires_at=data.validated_data["expires_at"],
            idempotency_key=f"grant:api:{request.user.pk}:{header_key}" if header_key else None,
            request=request,
        )
        return Response(self.OutputSerializer(entry).data, status=201)


@schema_named
class CreditLotListApi(APIView):
    """``GET /api/credits/lots``: the workspace's lots that still hold credits, in spending order."""

    permission_required = "usage.read"

    @extend_schema(
        operation_id="credits_lots_list",
        summary="The workspace's credits by origin and expiry",
        description=(
            "Lots that still hold credits, in the order they are spent: promotional credits "
            "(earliest expiry first), then paid credits. `expiresAt` null: never expires."
        ),
        tags=["credits"],
        responses={200: CreditLotOutputSerializer(many=True), **error_responses(401, 403, 404)},
    )
    def get(self, request):
        context = workspace_context_get(request)
        context.require(self.permission_required)
        lots = credit_lots_get(workspace=context.workspace)
        return Response(CreditLotOutputSerializer(lots, many=True).data)
