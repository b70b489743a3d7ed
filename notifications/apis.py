"""Webhooks and alert-thresholds API: parse → service/selector → serialize. Acts on the request's workspace
(``accounts.tenancy``); ``permission_required`` names the action of each method (owners and
admins for webhooks; billing readers and managers for the thresholds). Secrets appear only in
the create and rotate answers."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.tenancy import workspace_context_get
from core.exceptions import ApiError
from core.schema import error_responses, schema_named

from .selectors import (
    notification_settings_from_row,
    notification_settings_get,
    webhook_delivery_list,
    webhook_endpoint_get,
    webhook_endpoint_list,
)
from .services import (
    EVENT_TYPES,
    MAX_THRESHOLDS,
    notification_settings_update,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate,
    webhook_endpoint_test,
    webhook_endpoint_update,
)

READ, MANAGE = "webhooks.read", "webhooks.manage"


def _context(request, view):
    """The request's workspace context once its role may do the method's declared action."""
    context = workspace_context_get(request)
    method = "get" if request.method.lower() == "head" else request.method.lower()
    context.require(view.permission_required[method])
    return context


class EndpointOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField()
    events = serializers.ListField(child=serializers.CharField())
    description = serializers.CharField()
    enabled = serializers.BooleanField(source="is_enabled")
    disabled_at = serializers.DateTimeField(allow_null=True)
    disabled_reason = serializers.CharField()
    failing_since = serializers.DateTimeField(allow_null=True)
    previous_secret_expires_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class EndpointSecretOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField()
    events = serializers.ListField(child=serializers.CharField())
    secret = serializers.CharField(help_text="whsec_…: shown once; verify signatures with it.")


def _secret_payload(endpoint, secret: str) -> dict:
    return {"id": endpoint.pk, "url": endpoint.url, "events": endpoint.events, "secret": secret}


class EventsField(serializers.ListField):
    def __init__(self, **kwargs):
        super().__init__(child=serializers.ChoiceField(choices=EVENT_TYPES), allow_empty=False, **kwargs)


class WebhookEndpointListCreateApi(APIView):
    permission_required = {"get": READ, "post": MANAGE}

    class InputSerializer(serializers.Serializer):
        url = serializers.CharField(max_length=2000)
        events = EventsField()
        description = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)

    @extend_schema(
        operation_id="webhooks_list",
        summary="The workspace's webhook endpoints (never their secrets)",
        tags=["webhooks"],
        responses={200: EndpointOutputSerializer(many=True), **error_responses(401, 403, 404)},
    )
    def get(self, request):
        context = _context(request, self)
        endpoints = webhook_endpoint_list(workspace=context.workspace)
        return Response(EndpointOutputSerializer(endpoints, many=True).data)

    @extend_schema(
        operation_id="webhooks_create",
        summary="Add a webhook endpoint; its signing secret is returned once",
        tags=["webhooks"],
        request=InputSerializer,
        responses={201: EndpointSecretOutputSerializer, **error_responses(400, 401, 403, 404, 409, 413, 415)},
    )
    def post(self, request):
        context = _context(request, self)
        data = _valid(self.InputSerializer, request)
        endpoint, secret = webhook_endpoint_create(
            workspace=context.workspace, actor=context.user, request=request, **data
        )
        return Response(_secret_payload(endpoint, secret), status=status.HTTP_201_CREATED)


def _valid(serializer_class, request, **kwargs) -> dict:
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class WebhookEndpointDetailApi(APIView):
    permission_required = {"get": READ, "patch": MANAGE, "delete": MANAGE}

    class InputSerializer(serializers.Serializer):
        url = serializers.CharField(max_length=2000, required=False)
        events = EventsField(required=False)
        description = serializers.CharField(max_length=200, required=False, allow_blank=True)
        enabled = serializers.BooleanField(required=False)

    @extend_schema(
        operation_id="webhooks_get",
        summary="One webhook endpoint",
        tags=["webhooks"],
        responses={200: EndpointOutputSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request, endpoint_id: int):
        context = _context(request, self)
        endpoint = webhook_endpoint_get(workspace=context.workspace, endpoint_id=endpoint_id)
        return Response(EndpointOutputSerializer(endpoint).data)

    @extend_schema(
        operation_id="webhooks_update",
        summary="Change an endpoint's URL, events, description, or enable/disable it",
        tags=["webhooks"],
        request=InputSerializer,
        responses={200: EndpointOutputSerializer, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def patch(self, request, endpoint_id: int):
        context = _context(request, self)
        data = _valid(self.InputSerializer, request)
        endpoint = webhook_endpoint_update(
            workspace=context.workspace, endpoint_id=endpoint_id, actor=context.user, request=request, **data
        )
        return Response(EndpointOutputSerializer(endpoint).data)

    @extend_schema(
        operation_id="webhooks_delete",
        summary="Delete an endpoint (its pending deliveries go with it)",
        tags=["webhooks"],
        responses={204: None, **error_responses(401, 403, 404)},
    )
    def delete(self, request, endpoint_id: int):
        context = _context(request, self)
        webhook_endpoint_delete(
            workspace=context.workspace, endpoint_id=endpoint_id, actor=context.user, request=request
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookEndpointRotateApi(APIView):
    permission_required = {"post": MANAGE}

    @extend_schema(
        operation_id="webhooks_rotate",
        summary="A new signing secret (returned once); the old one keeps signing for 24 hours",
        tags=["webhooks"],
        request=None,
        responses={200: EndpointSecretOutputSerializer, **error_responses(401, 403, 404)},
    )
    def post(self, request, endpoint_id: int):
        context = _context(request, self)
        endpoint, secret = webhook_endpoint_rotate(
            workspace=context.workspace, endpoint_id=endpoint_id, actor=context.user, request=request
        )
        return Response(_secret_payload(endpoint, secret))


class DeliveryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event_id = serializers.CharField(source="event.event_id")
    event_type = serializers.CharField(source="event.type")
    status = serializers.CharField()
    attempt_count = serializers.IntegerField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class WebhookEndpointTestApi(APIView):
    permission_required = {"post": MANAGE}

    @extend_schema(
        operation_id="webhooks_test",
        summary="Send a webhook.test event to this endpoint (queued; see its deliveries)",
        tags=["webhooks"],
        request=None,
        responses={202: DeliveryOutputSerializer, **error_responses(401, 403, 404, 409)},
    )
    def post(self, request, endpoint_id: int):
        context = _context(request, self)
        delivery = webhook_endpoint_test(
            workspace=context.workspace, endpoint_id=endpoint_id, actor=context.user
        )
        return Response(DeliveryOutputSerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class WebhookDeliveryListApi(APIView):
    permission_required = {"get": READ}

    @extend_schema(
        operation_id="webhooks_deliveries_list",
        summary="The endpoint's latest 100 deliveries, newest first, with status codes",
        tags=["webhooks"],
        responses={200: DeliveryOutputSerializer(many=True), **error_responses(401, 403, 404)},
    )
    def get(self, request, endpoint_id: int):
        context = _context(request, self)
        deliveries = webhook_delivery_list(workspace=context.workspace, endpoint_id=endpoint_id)
        return Response(DeliveryOutputSerializer(deliveries, many=True).data)


# --- alert thresholds ---------------------------------------------------------------------------


class StrictIntegerField(serializers.IntegerField):
    """An integer as JSON sends it: "80", 80.0 and true are refused, not coerced."""

    default_error_messages = {"invalid": "A whole number is required."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "true or false is required."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class PercentsField(serializers.ListField):
    def __init__(self, **kwargs):
        super().__init__(
            child=StrictIntegerField(min_value=1, max_value=100),
            allow_empty=False,
            max_length=MAX_THRESHOLDS,
            **kwargs,
        )


class NotificationSettingsOutputSerializer(serializers.Serializer):
    quota_thresholds = serializers.ListField(
        child=serializers.IntegerField(), source="quota", help_text="Percents of each plan quota."
    )
    limit_thresholds = serializers.ListField(
        child=serializers.IntegerField(), source="limits", help_text="Percents of each key and member limit."
    )
    credits_low_balance = serializers.IntegerField(
        help_text="credits.low below this many credits (0: never)."
    )
    credits_low_balance_is_default = serializers.BooleanField()
    email_enabled = serializers.BooleanField(
        help_text="Reached alerts are also emailed to the billing contacts."
    )


@schema_named
class NotificationSettingsApi(APIView):
    permission_required = {"get": "billing.read", "patch": "billing.manage"}

    class InputSerializer(serializers.Serializer):
        quota_thresholds = PercentsField(required=False)
        limit_thresholds = PercentsField(required=False)
        credits_low_balance = StrictIntegerField(
            required=False, allow_null=True, min_value=0, help_text="null: the operator's default."
        )
        email_enabled = StrictBooleanField(required=False)

    @extend_schema(
        operation_id="notifications_settings_get",
        summary="The workspace's alert thresholds (defaults until changed)",
        tags=["notifications"],
        responses={200: NotificationSettingsOutputSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request):
        context = _context(request, self)
        thresholds = notification_settings_get(workspace_id=context.workspace.pk)
        return Response(NotificationSettingsOutputSerializer(thresholds).data)

    @extend_schema(
        operation_id="notifications_settings_update",
        summary="Change the alert thresholds: percents 1-100 (at most 5, each once), a balance >= 0",
        tags=["notifications"],
        request=InputSerializer,
        responses={
            200: NotificationSettingsOutputSerializer,
            **error_responses(400, 401, 403, 404, 413, 415),
        },
    )
    def patch(self, request):
        context = _context(request, self)
        if not isinstance(request.data, dict):
            raise ApiError("invalid_request", "The body is a JSON object.")
        data = _valid(self.InputSerializer, request)
        row = notification_settings_update(
            workspace=context.workspace, actor=context.user, request=request, **data
        )
        return Response(NotificationSettingsOutputSerializer(notification_settings_from_row(row)).data)
