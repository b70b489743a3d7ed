"""Account API: registration, tokens, the workspace's API keys and provider keys. Thin doors to
services; the workspace is the request's (``accounts.tenancy``) and each door names the role
permission it needs (``accounts.roles``)."""

from django.conf import settings
from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.exceptions import ApiError
from core.schema import error_responses, schema_named

from .credential_limits import (
    CredentialDoor,
    credential_attempt_account_count,
    credential_attempt_address_count,
)
from .key_checks import provider_key_verify
from .models import ProviderCredential
from .selectors import (
    api_key_get,
    api_key_limits_usage_get,
    api_key_list,
    api_key_manageable_get,
    provider_key_status_list,
)
from .services import (
    PROVIDER_SECRET_MAX_LENGTH,
    api_key_create,
    api_key_limits_set,
    api_key_revoke,
    api_key_rotate,
    provider_credential_delete,
    provider_credential_set,
    user_register,
    user_token_get_or_create,
)
from .tenancy import workspace_context_get


def _refuse_over_limit(wait: int | None) -> None:
    if wait is not None:
        raise ApiError(
            "rate_limit_exceeded",
            f"Too many attempts. Retry after {wait} seconds.",
            headers={"Retry-After": str(wait)},
        )


def _attempt_count(request, *, door: CredentialDoor, serializer_class) -> dict:
    """The credential doors' limits (accounts.credential_limits, shared with the pages): the
    address is counted before the body is read, the account (email) once it is parsed."""
    _refuse_over_limit(credential_attempt_address_count(request=request, door=door))
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    account = data.validated_data["email"]
    _refuse_over_limit(credential_attempt_account_count(request=request, door=door, account=account))
    return data.validated_data


@schema_named
class RegisterApi(APIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)

    class InputSerializer(serializers.Serializer):
        email = serializers.CharField(max_length=254)
        password = serializers.CharField(max_length=128, trim_whitespace=False)

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        email = serializers.EmailField()
        token = serializers.CharField()

    @extend_schema(
        operation_id="auth_register",
        auth=[],
        summary="Create an account",
        description=(
            "Returns the new account and its DRF token. Rate limited per client address "
            "(AUTH_RATE_LIMIT) and per email (AUTH_ACCOUNT_RATE_LIMIT), with the sign-up page."
        ),
        tags=["auth"],
        request=InputSerializer,
        responses={201: OutputSerializer, **error_responses(400, 413, 415, 429)},
    )
    def post(self, request):
        data = _attempt_count(request, door=CredentialDoor.SIGNUP, serializer_class=self.InputSerializer)
        user = user_register(**data)
        payload = {"id": user.pk, "email": user.email, "token": user_token_get_or_create(user=user)}
        return Response(self.OutputSerializer(payload).data, status=status.HTTP_201_CREATED)


@schema_named
class TokenApi(APIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)

    class InputSerializer(serializers.Serializer):
        email = serializers.CharField(max_length=254)
        password = serializers.CharField(max_length=128, trim_whitespace=False)

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()

    @extend_schema(
        operation_id="auth_token",
        auth=[],
        summary="Exchange email and password for the DRF token",
        description=(
            "A wrong email or password answers 400. Rate limited per client address (AUTH_RATE_LIMIT) "
            "and per email (AUTH_ACCOUNT_RATE_LIMIT), with the log-in pages."
        ),
        tags=["auth"],
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 413, 415, 429)},
    )
    def post(self, request):
        data = _attempt_count(request, door=CredentialDoor.LOGIN, serializer_class=self.InputSerializer)
        email = data["email"].strip().lower()
        user = authenticate(request._request, username=email, password=data["password"])
        if user is None:
            # Same answer for an unknown email, a wrong password and a disabled account.
            raise ApiError("invalid_request", "Invalid email or password.")
        return Response(self.OutputSerializer({"token": user_token_get_or_create(user=user)}).data)


class ApiKeyLimitUsageSerializer(serializers.Serializer):
    unit = serializers.ChoiceField(choices=["requests", "tokens", "credits", "money"])
    window = serializers.ChoiceField(choices=["day", "month", "total"])
    amount = serializers.IntegerField()  # money: minor units (cents) of ``currency``
    used = serializers.IntegerField(allow_null=True)  # settled + held by calls in flight
    resets_at = serializers.DateTimeField(allow_null=True)  # null: a ``total`` limit never resets
    # Money limits: the workspace plan's currency (ISO 4217, lower case); null for other units.
    currency = serializers.CharField(allow_null=True, required=False, default=None)


class ApiKeyOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    # The member who created the key (it acts with their role); null once their account is gone.
    created_by = serializers.EmailField(source="created_by.email", allow_null=True)
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)  # set while a rotation's grace runs
    # The key's own limits, each with its ``used`` (settled + in flight) in the current window
    # and ``resets_at`` (null for ``total``); and the models it may call (empty: all).
    limits = serializers.SerializerMethodField()
    allowed_models = serializers.ListField(child=serializers.CharField())

    @extend_schema_field(ApiKeyLimitUsageSerializer(many=True))
    def get_limits(self, api_key) -> list[dict]:
        usage = (self.context.get("limits_usage") or {}).get(api_key.pk)
        if usage is None:
            usage = api_key_limits_usage_get(api_keys=[api_key]).get(api_key.pk, [])
        return ApiKeyLimitUsageSerializer(usage, many=True).data


class ApiKeyCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    key = serializers.CharField()
    prefix = serializers.CharField()
    created_at = serializers.DateTimeField()


@schema_named
class ApiKeyListCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)

    @extend_schema(
        operation_id="keys_list",
        summary="List the workspace's API keys",
        description=(
            "Owners and admins see every key of the workspace, other members the keys they created. "
            "Revoked and expired keys included; the plaintext is never returned again."
        ),
        tags=["keys"],
        responses={200: ApiKeyOutputSerializer(many=True), **error_responses(401, 404)},
    )
    def get(self, request):
        ctx = workspace_context_get(request)
        ctx.require("keys.read")
        created_by = None if ctx.can("keys.manage_any") else ctx.user
        keys = list(api_key_list(workspace=ctx.workspace, created_by=created_by))
        usage = api_key_limits_usage_get(api_keys=keys)
        return Response(ApiKeyOutputSerializer(keys, many=True, context={"limits_usage": usage}).data)

    @extend_schema(
        operation_id="keys_create",
        summary="Create an API key in the workspace",
        description=(
            "`key` is the plaintext, shown in this response only. The key acts with your role in the "
            "workspace (400 past API_KEYS_PER_USER_LIMIT of your active keys in it)."
        ),
        tags=["keys"],
        request=InputSerializer,
        responses={201: ApiKeyCreatedSerializer, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def post(self, request):
        ctx = workspace_context_get(request)
        ctx.require("keys.create")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        api_key, plaintext = api_key_create(
            workspace=ctx.workspace, created_by=ctx.user, name=data.validated_data["name"], request=request
        )
        payload = {
            "id": api_key.pk,
            "name": api_key.name,
            "key": plaintext,
            "prefix": api_key.prefix,
            "created_at": api_key.created_at,
        }
        return Response(ApiKeyCreatedSerializer(payload).data, status=status.HTTP_201_CREATED)


@schema_named
class ApiKeyDeleteApi(APIView):
    class InputSerializer(serializers.Serializer):
        limits = serializers.ListField(
            required=False
        )  # items: ``LimitSerializer`` (validated by the service)
        allowed_models = serializers.ListField(child=serializers.CharField(max_length=128), required=False)

    @extend_schema(
        operation_id="keys_limits_set",
        summary="Set an API key's limits and model allow-list",
        description=(
            "`limits`: `[{unit: requests|tokens|credits|money, window: day|month|total, amount}]`, at most "
            "one per unit and window (replaces the key's limits; `[]` removes them). `money` amounts are "
            "minor units (cents) of the workspace plan's currency; `credits` and `money` count each "
            "call's charge. `allowed_models`: the model ids "
            "the key may call (`[]`: all). Owners and admins for any key of the workspace, any member for "
            "their own key (403 otherwise). Enforced by the proxy from the key's next call: 429 "
            "`key_limit_exceeded`, 403 `model_not_allowed`."
        ),
        tags=["keys"],
        request=InputSerializer,
        responses={200: ApiKeyOutputSerializer, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def patch(self, request, key_id: int):
        ctx = workspace_context_get(request)
        api_key = api_key_get(workspace=ctx.workspace, key_id=key_id)
        if api_key.created_by_id != ctx.user.pk:
            ctx.require("limits.manage")
        if not isinstance(request.data, dict):
            raise ApiError("invalid_request", "The body must be a JSON object.")
        unknown = set(request.data) - {"limits", "allowed_models"}
        if unknown:
            raise ApiError(
                "invalid_request", f"Unknown field: {sorted(unknown)[0]}.", param=sorted(unknown)[0]
            )
        changes = {name: request.data[name] for name in ("limits", "allowed_models") if name in request.data}
        if not changes:
            raise ApiError("invalid_request", "Give limits and/or allowed_models.", param="limits")
        api_key = api_key_limits_set(
            workspace=ctx.workspace, key_id=api_key.pk, actor=ctx.user, request=request, **changes
        )
        return Response(ApiKeyOutputSerializer(api_key).data)

    @extend_schema(
        operation_id="keys_revoke",
        summary="Revoke an API key",
        description=(
            "Takes effect at once on the proxy. Your own keys; any key of the workspace for owners and "
            "admins (another member's key otherwise answers 403). Another workspace's key id answers 404."
        ),
        tags=["keys"],
        request=None,
        responses={204: None, **error_responses(401, 403, 404)},
    )
    def delete(self, request, key_id: int):
        ctx = workspace_context_get(request)
        api_key = api_key_manageable_get(context=ctx, key_id=key_id)
        api_key_revoke(workspace=ctx.workspace, key_id=api_key.pk, actor=ctx.user, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


@schema_named
class ApiKeyRotateApi(APIView):
    class InputSerializer(serializers.Serializer):
        grace_seconds = serializers.IntegerField(
            required=False, default=0, min_value=0, max_value=settings.API_KEY_ROTATE_MAX_GRACE_SECONDS
        )

    class OutputSerializer(ApiKeyCreatedSerializer):
        previous = ApiKeyOutputSerializer()

    @extend_schema(
        operation_id="keys_rotate",
        summary="Rotate an API key",
        description=(
            "Creates a replacement key (plaintext in this response only), made by the same member; the "
            "old key stops at once or after `grace_seconds`. Your own keys; any key of the workspace for "
            "owners and admins (403 otherwise). A revoked or already rotating key answers 409."
        ),
        tags=["keys"],
        request=InputSerializer,
        responses={201: OutputSerializer, **error_responses(400, 401, 403, 404, 409, 413, 415)},
    )
    def post(self, request, key_id: int):
        ctx = workspace_context_get(request)
        api_key = api_key_manageable_get(context=ctx, key_id=key_id)
        data = self.InputSerializer(data=request.data or {})
        data.is_valid(raise_exception=True)
        rotation = api_key_rotate(
            workspace=ctx.workspace,
            key_id=api_key.pk,
            actor=ctx.user,
            grace_seconds=data.validated_data["grace_seconds"],
            request=request,
        )
        payload = {
            "id": rotation.new_key.pk,
            "name": rotation.new_key.name,
            "key": rotation.plaintext,
            "prefix": rotation.new_key.prefix,
            "created_at": rotation.new_key.created_at,
            "previous": rotation.old_key,
        }
        return Response(self.OutputSerializer(payload).data, status=status.HTTP_201_CREATED)


class ProviderKeyInputSerializer(serializers.Serializer):
    # Length and content are checked by the service (one rule for API, pages and admin).
    key = serializers.CharField(
        allow_blank=True, trim_whitespace=False, max_length=PROVIDER_SECRET_MAX_LENGTH * 4
    )


class ProviderKeyWorkspaceStatusSerializer(serializers.Serializer):
    configured = serializers.BooleanField(source="workspace_configured")
    masked = serializers.CharField(source="workspace_masked", allow_null=True)


@schema_named
class ProviderKeyListApi(APIView):
    WorkspaceSerializer = ProviderKeyWorkspaceStatusSerializer

    class OutputSerializer(serializers.Serializer):
        provider = serializers.CharField()
        workspace = serializers.SerializerMethodField()
        source = serializers.CharField()

        @extend_schema_field(ProviderKeyWorkspaceStatusSerializer)
        def get_workspace(self, status_):
            return ProviderKeyListApi.WorkspaceSerializer(status_).data

    @extend_schema(
        operation_id="provider_keys_list",
        summary="Provider keys in force for the workspace",
        description=(
            "Per provider: the workspace's own key (masked) and the source the proxy would use for "
            "every member's keys. Owners and admins (others: 403)."
        ),
        tags=["provider-keys"],
        responses={200: OutputSerializer(many=True), **error_responses(401, 403, 404)},
    )
    def get(self, request):
        ctx = workspace_context_get(request)
        ctx.require("provider_keys.read")
        statuses = provider_key_status_list(workspace=ctx.workspace)
        return Response(self.OutputSerializer(statuses, many=True).data)


class ProviderKeyOutputSerializer(serializers.Serializer):
    provider = serializers.CharField()
    scope = serializers.CharField()
    masked = serializers.CharField()
    updated_at = serializers.DateTimeField()


class ProviderKeyCheckSerializer(serializers.Serializer):
    """What the provider said when a global key was checked (never the key)."""

    outcome = serializers.ChoiceField(choices=["ok", "rejected", "unavailable", "skipped"])
    status = serializers.IntegerField(allow_null=True)
    message = serializers.CharField()


class ProviderKeyWorkspaceApi(APIView):
    @extend_schema(
        operation_id="provider_keys_workspace_set",
        summary="Set the workspace's own key for a provider",
        description=(
            "Used for every member's keys in place of the operator's. Stored encrypted and only ever "
            "shown masked. Owners and admins (others: 403). Unknown provider: 404."
        ),
        tags=["provider-keys"],
        request=ProviderKeyInputSerializer,
        responses={200: ProviderKeyOutputSerializer, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def put(self, request, provider: str):
        ctx = workspace_context_get(request)
        ctx.require("provider_keys.manage")
        data = ProviderKeyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        credential = provider_credential_set(
            scope=ProviderCredential.Scope.WORKSPACE,
            provider=provider,
            secret=data.validated_data["key"],
            workspace=ctx.workspace,
            actor=ctx.user,
            request=request,
        )
        return Response(ProviderKeyOutputSerializer(credential).data)

    @extend_schema(
        operation_id="provider_keys_workspace_delete",
        summary="Remove the workspace's own key for a provider",
        description="Owners and admins (others: 403).",
        tags=["provider-keys"],
        request=None,
        responses={204: None, **error_responses(401, 403, 404)},
    )
    def delete(self, request, provider: str):
        ctx = workspace_context_get(request)
        ctx.require("provider_keys.manage")
        provider_credential_delete(
            scope=ProviderCredential.Scope.WORKSPACE,
            provider=provider,
            workspace=ctx.workspace,
            actor=ctx.user,
            request=request,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


@schema_named
class ProviderKeyGlobalApi(APIView):
    """Operator keys used by every workspace without its own key. Staff only (others: 403)."""

    permission_classes = (IsAdminUser,)

    class InputSerializer(ProviderKeyInputSerializer):
        skip_check = serializers.BooleanField(required=False, default=False)

    class OutputSerializer(ProviderKeyOutputSerializer):
        check = ProviderKeyCheckSerializer()

    @extend_schema(
        operation_id="admin_provider_keys_global_set",
        summary="Set the operators' key for a provider (staff)",
        description="The key is first checked with the provider (a read-only request such as "
        "`GET /models`, a few seconds at most): a key the provider rejects is refused with 400 "
        "`invalid_provider_key` and the provider's answer; a provider that cannot be reached "
        'answers 502 `upstream_error`. `skip_check=1` (query) or `"skip_check": true` (body) saves '
        "without asking the provider. The answer's `check` says what the provider said.",
        tags=["admin"],
        parameters=[
            OpenApiParameter(
                "skip_check", bool, OpenApiParameter.QUERY, description="Save without asking the provider."
            )
        ],
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401, 403, 404, 413, 415, 502)},
    )
    def put(self, request, provider: str):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        skip = data.validated_data["skip_check"] or request.query_params.get("skip_check") in ("1", "true")
        check = provider_key_verify(provider=provider, secret=data.validated_data["key"], skip=skip)
        credential = provider_credential_set(
            scope=ProviderCredential.Scope.GLOBAL,
            provider=provider,
            secret=data.validated_data["key"],
            actor=request.user,
            request=request,
        )
        fields = ("provider", "scope", "masked", "updated_at")
        saved = {name: getattr(credential, name) for name in fields}
        return Response(self.OutputSerializer({**saved, "check": check}).data)

    @extend_schema(
        operation_id="admin_provider_keys_global_delete",
        summary="Remove the operators' key for a provider (staff)",
        tags=["admin"],
        request=None,
        responses={204: None, **error_responses(401, 403, 404)},
    )
    def delete(self, request, provider: str):
        provider_credential_delete(
            scope=ProviderCredential.Scope.GLOBAL, provider=provider, actor=request.user, request=request
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
