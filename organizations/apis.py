"""HTTP APIs: usage-report ingestion (instances: the shared bearer token, or an organization's
own once the operator issued one) and the staff APIs (session auth, is_staff) that list and
link organizations."""

from __future__ import annotations

import json

from django.conf import settings
from django.utils import timezone
from django_ratelimit.core import is_ratelimited
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication, get_authorization_header
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.gateways.stripe import StripeServiceError
from core.exceptions import ApiError
from core.schema import error_responses, schema_named
from core.time import isoformat_z

from .models import Organization
from .selectors import ingestion_credential_resolve, organization_get, organizations_overview
from .services import FUTURE_TOLERANCE, METER_WINDOW, TRIAL_DAYS_MAX, organization_link, usage_report_ingest

MAX_BODY_BYTES = 64 * 1024


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, not a string, float or boolean that happens to convert."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class IsoDateTimeField(serializers.DateTimeField):
    """Output only: ``...Z`` or null (declared nullable so the schema says so)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_representation(self, value):
        return isoformat_z(value) if value else None


def _bearer_token(request) -> str:
    parts = get_authorization_header(request).split()
    if len(parts) != 2 or parts[0].lower() != b"bearer":
        return ""
    try:
        return parts[1].decode("ascii")
    except UnicodeError:
        return ""


def _json_body(request, *, max_bytes: int):
    """Parse the body ourselves so its size is checked before any parsing happens."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > max_bytes:
        raise ApiError("payload_too_large", f"Request body is larger than {max_bytes} bytes.")
    body = request.body
    if len(body) > max_bytes:
        raise ApiError("payload_too_large", f"Request body is larger than {max_bytes} bytes.")
    if body and request.content_type != "application/json":
        raise ApiError("unsupported_media_type", "Send the report as application/json.")
    try:
        return json.loads(body)
    except ValueError:
        raise ApiError("invalid_json", "Request body is not valid JSON.")


@schema_named
class UsageReportApi(APIView):
    """POST /api/usage-report — a VaultAI instance's daily user count."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes: list = []

    class InputSerializer(serializers.Serializer):
        organization_id = serializers.UUIDField()
        organization_name = serializers.CharField(max_length=200)
        instance_url = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
        user_count = StrictIntegerField(min_value=0)
        timestamp = serializers.DateTimeField()

        def validate_user_count(self, value):
            if value > settings.ORG_USER_COUNT_MAX:
                raise serializers.ValidationError(
                    f"Ensure this value is less than or equal to {settings.ORG_USER_COUNT_MAX}."
                )
            return value

        def validate_timestamp(self, value):
            now = timezone.now()
            if value > now + FUTURE_TOLERANCE:
                raise serializers.ValidationError("Timestamp is more than 5 minutes in the future.")
            if value < now - METER_WINDOW:
                raise serializers.ValidationError("Timestamp is more than 35 days in the past.")
            return value

    @extend_schema(
        operation_id="usage_report_ingest",
        summary="Report an instance's user count (Bearer billing token)",
        description=(
            "Authenticated by `Authorization: Bearer <token>`, not by user credentials: the shared "
            "`BILLING_API_TOKEN`, or the organization's own ingestion token once the operator issued "
            "one (then the shared token answers 403 for that organization, and an organization's "
            "token answers 403 for any other). A repeated report answers `duplicate: true`; a report "
            "whose user count jumped past the organization's factor is stored for review and answers "
            "`held_for_review: true`. "
            "Bodies over 64 KiB answer 413, non-JSON bodies 415; ORG_USAGE_REPORT_RATE per "
            "organization (429)."
        ),
        tags=["organizations"],
        auth=[],
        request={"application/json": InputSerializer},
        responses={
            200: inline_serializer(
                name="UsageReportReceipt",
                fields={
                    "success": serializers.BooleanField(),
                    "message": serializers.CharField(),
                    "report_id": serializers.UUIDField(),
                    "organization_status": serializers.CharField(),
                    "duplicate": serializers.BooleanField(required=False),
                    "held_for_review": serializers.BooleanField(required=False),
                },
            ),
            **error_responses(400, 401, 403, 413, 415, 429),
        },
    )
    def post(self, request):
        credential = ingestion_credential_resolve(presented=_bearer_token(request))
        if credential is None:
            raise ApiError(
                "invalid_api_key",
                "Missing or invalid billing token.",
                headers={"WWW-Authenticate": 'Bearer realm="api"'},
            )
        serializer = self.InputSerializer(data=_json_body(request, max_bytes=MAX_BODY_BYTES))
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # One budget per organization and credential: reports sent with a token that will be
        # refused (the shared one for an organization with its own, or another organization's)
        # cannot use up the budget of the instance holding the right one.
        bucket = f"{data['organization_id']}:{credential.organization_id or 'shared'}"
        if is_ratelimited(
            request,
            group="organizations.usage_report",
            key=lambda _group, _request: bucket,
            rate=settings.ORG_USAGE_REPORT_RATE,
            increment=True,
        ):
            raise ApiError(
                "rate_limit_exceeded",
                "Too many reports for this organization.",
                headers={"Retry-After": "3600"},
            )
        result = usage_report_ingest(
            organization_id=data["organization_id"],
            organization_name=data["organization_name"],
            instance_url=data["instance_url"],
            user_count=data["user_count"],
            reported_at=data["timestamp"],
            credential=credential,
        )
        body = {
            "success": True,
            "message": "Usage report received",
            "report_id": str(result.report.pk),
            "organization_status": result.organization.status,
        }
        if result.duplicate:
            body["duplicate"] = True
        if result.held:
            body["held_for_review"] = True
        return Response(body)


class PendingIdentitySerializer(serializers.Serializer):
    """A linked organization's name and URL as its reports asked, waiting for the operator."""

    name = serializers.CharField(source="pending_name")
    instance_url = serializers.CharField(source="pending_instance_url")
    queued_at = IsoDateTimeField(source="pending_identity_at")


class _StaffApi(APIView):
    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAdminUser]


@schema_named
class OrganizationListApi(_StaffApi):
    """GET /api/admin/organizations — pending and linked organizations."""

    class PendingSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        name = serializers.CharField()
        instance_url = serializers.CharField()
        subscription_status = serializers.CharField(source="status")
        latest_user_count = serializers.IntegerField()
        first_seen_at = IsoDateTimeField()
        last_report_at = IsoDateTimeField()
        stripe_customer_id = serializers.CharField(allow_null=True)
        link_error = serializers.CharField()
        has_ingestion_token = serializers.BooleanField()
        created_at = IsoDateTimeField()

    class LinkedSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        name = serializers.CharField()
        instance_url = serializers.CharField()
        stripe_customer_id = serializers.CharField(allow_null=True)
        stripe_subscription_id = serializers.CharField(allow_null=True)
        deployment_type = serializers.CharField()
        plan_type = serializers.CharField()
        subscription_status = serializers.CharField(source="status")
        admin_email = serializers.CharField()
        latest_user_count = serializers.IntegerField()
        trial_end = IsoDateTimeField()
        last_report_at = IsoDateTimeField()
        has_ingestion_token = serializers.BooleanField()
        pending_identity = serializers.SerializerMethodField()
        created_at = IsoDateTimeField()

        @extend_schema_field(PendingIdentitySerializer(allow_null=True))
        def get_pending_identity(self, obj):
            return PendingIdentitySerializer(obj).data if obj.has_pending_identity else None

    @extend_schema(
        operation_id="admin_organizations_list",
        summary="Pending and linked organizations (staff)",
        tags=["admin"],
        responses={
            200: inline_serializer(
                name="OrganizationOverview",
                fields={
                    "summary": inline_serializer(
                        name="OrganizationOverviewSummary",
                        fields={
                            "total": serializers.IntegerField(),
                            "linked": serializers.IntegerField(),
                            "pending": serializers.IntegerField(),
                        },
                    ),
                    "organizations": inline_serializer(
                        name="OrganizationOverviewLists",
                        fields={
                            "pending": PendingSerializer(many=True),
                            "linked": LinkedSerializer(many=True),
                        },
                    ),
                },
            ),
            **error_responses(401, 403),
        },
    )
    def get(self, request):
        overview = organizations_overview()
        return Response(
            {
                "summary": overview.summary,
                "organizations": {
                    "pending": self.PendingSerializer(overview.pending, many=True).data,
                    "linked": self.LinkedSerializer(overview.linked, many=True).data,
                },
            }
        )


@schema_named
class OrganizationLinkApi(_StaffApi):
    """POST /api/admin/organizations/{id}/link — create the Stripe customer and subscription."""

    class InputSerializer(serializers.Serializer):
        admin_email = serializers.EmailField()
        deployment_type = serializers.ChoiceField(choices=Organization.DeploymentType.values)
        plan_type = serializers.ChoiceField(choices=Organization.PlanType.values)
        trial_days = StrictIntegerField(min_value=0, max_value=TRIAL_DAYS_MAX, default=0)
        price_id = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
        backfill = serializers.BooleanField(default=False)

    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        name = serializers.CharField()
        stripe_customer_id = serializers.CharField(allow_null=True)
        stripe_subscription_id = serializers.CharField(allow_null=True)
        subscription_status = serializers.CharField(source="status")
        trial_end = IsoDateTimeField()

    @extend_schema(
        operation_id="admin_organizations_link",
        summary="Link an organization to a Stripe customer and subscription (staff)",
        description=(
            "Unknown organization: 404; already linked or being linked: 409; a Stripe failure: 502 "
            "with the customer id created so far (retrying reuses it)."
        ),
        tags=["admin"],
        request=InputSerializer,
        responses={
            200: inline_serializer(
                name="OrganizationLinkResult",
                fields={
                    "success": serializers.BooleanField(),
                    "message": serializers.CharField(),
                    "organization": OutputSerializer(),
                },
            ),
            **error_responses(400, 401, 403, 404, 409, 413, 415, 502),
        },
    )
    def post(self, request, organization_id):
        organization = organization_get(organization_id=organization_id)
        if organization is None:
            raise ApiError("not_found", "No such organization.")
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
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
            raise ApiError(
                "upstream_error",
                exc.message,
                stripe_customer_id=organization.stripe_customer_id,
            )
        return Response(
            {
                "success": True,
                "message": "Organization linked to Stripe successfully",
                "organization": self.OutputSerializer(organization).data,
            }
        )
