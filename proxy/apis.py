"""Proxy endpoints: thin async DRF views (adrf) over ``proxy.gateway`` and the services.

Every view: body size check (413 before parsing) → key auth + plan + rate limit in one short
thread block → async handler. ``X-RateLimit-*`` headers go on every answer, errors included.
"""

from __future__ import annotations

import asyncio
import inspect
import time

from adrf.views import APIView as AsyncAPIView
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.asgi import ASGIRequest
from django.utils import timezone
from django.utils.http import parse_header_parameters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from accounts.authentication import ApiKeyAuthentication
from billing.selectors import plan_for_user_get, quota_status_get
from core.exceptions import ApiError
from core.fastio import transient_loop
from core.jsonbody import JsonBodyError, json_body_error, json_strict_loads
from core.lifecycle import shutdown_run
from core.schema import ErrorResponseSerializer, error_responses, schema_named
from core.time import isoformat_z

from . import fastlane, upstreams
from .admission import admission_enter, admission_leave
from .dbcall import db_call
from .errors import chain_exhausted_error, upstream_client_error
from .funding import funding_quota_block, quota_block
from .gateway import ChatCall, background_task_start, call_detached, chat_call_run
from .ratelimit import (
    rate_limit_error,
    rate_limit_hit,
    rate_limit_state,
    rate_limit_window,
    token_limit_headers,
)
from .router import provider_chain
from .selectors import usage_recent_list
from .services import (
    BudgetExhausted,
    CallRecord,
    NoProviderKey,
    proxy_call_abandon,
    proxy_call_settle,
    rate_limited_minute_record,
)

try:  # accounts' "touch at most once a minute"; optional so the proxy does not depend on it
    from accounts.services import api_key_touch
except ImportError:  # pragma: no cover
    api_key_touch = None


_touched: dict[int, float] = {}
TOUCH_INTERVAL_SECONDS = 60


def _touch_due(key_id: int) -> bool:
    """``api_key_touch`` gates on the shared cache (a round trip per call); this process asks it
    at most once a minute per key, which is all ``last_used_at`` needs."""
    now = time.monotonic()
    if now - _touched.get(key_id, -TOUCH_INTERVAL_SECONDS) < TOUCH_INTERVAL_SECONDS:
        return False
    if len(_touched) > 100_000:
        _touched.clear()
    _touched[key_id] = now
    return True


def _raise_validation(serializer) -> None:
    if not serializer.is_valid():
        raise serializers.ValidationError(serializer.errors)


class JsonOnlyNegotiation(BaseContentNegotiation):
    """The proxy answers JSON (or an SSE stream built by the view) whatever ``Accept`` says.

    DRF's default negotiation answers 406 to ``Accept: text/event-stream``, which is exactly what
    streaming clients send; it also costs a header parse per call for a choice that never varies.
    """

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = renderers[0]
        return renderer, renderer.media_type


class ProxyApiView(AsyncAPIView):
    """Base for the proxy: Bearer ``sk_agentai_…`` only, rate-limited per key, JSON only."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonOnlyNegotiation

    def _gate(self, request, counted: int | None = None):
        """Auth, plan and rate limit on the ORM path: one thread hop, a couple of indexed queries.

        ``counted``: the fast lane's script already counted this request in its rate-limit window.
        """
        self.initial(request)
        identity = request.auth
        plan = plan_for_user_get(user=request.user)
        if counted is None:
            state = rate_limit_hit(key_id=identity.key_id, limit=plan.rate_limit_per_minute)
        else:
            _key, reset_at = rate_limit_window(key_id=identity.key_id)
            state = rate_limit_state(limit=plan.rate_limit_per_minute, count=counted, reset_at=reset_at)
        self._ratelimit_headers = state.headers()
        if state.exceeded:
            if state.first_refusal:
                rate_limited_minute_record(user_id=identity.user_id, day=timezone.now().date())
            raise rate_limit_error(state)
        if api_key_touch is not None and _touch_due(identity.key_id):
            api_key_touch(identity=identity)
        return plan

    async def _gate_any(self, request):
        """The gate: one Redis script decides for a key it has seen; a key it has not learnt yet
        (or a malformed header) is read from the database once (``_gate``) and learnt."""
        raw_key = fastlane.bearer_key(request)
        counted = None
        if raw_key is not None:
            passed, counted = await fastlane.gate(raw_key=raw_key)
            if passed is None and counted is None and await fastlane.key_learning_wait(raw_key):
                passed, counted = await fastlane.gate(raw_key=raw_key)  # learnt meanwhile
            if passed is not None:
                request.user = passed.user
                request.auth = passed.identity
                self.credentials_version = passed.credentials_version
                self.cooling = passed.cooling
                self.initial(request)  # permissions etc.; authentication is already done
                self._ratelimit_headers = passed.rate.headers()
                if passed.rate.exceeded:
                    if passed.rate.first_refusal:
                        background_task_start(
                            db_call(
                                rate_limited_minute_record,
                                user_id=passed.identity.user_id,
                                day=timezone.now().date(),
                            )
                        )
                    raise rate_limit_error(passed.rate)
                if api_key_touch is not None and _touch_due(passed.identity.key_id):
                    background_task_start(db_call(api_key_touch, identity=passed.identity))
                return passed.plan
        if raw_key is None:
            return await db_call(self._gate, request, counted)
        with fastlane.key_learning(raw_key):
            plan = await db_call(self._gate, request, counted)
            fastlane.key_owner_learn(raw_key=raw_key, identity=request.auth)
        return plan

    def _check_body_size(self, request) -> None:
        limit = settings.PROXY_MAX_BODY_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            raise ApiError("payload_too_large", f"Request body is larger than {limit} bytes.")
        try:
            size = len(request._request.body)
        except RequestDataTooBig:
            size = limit + 1
        if size > limit:
            raise ApiError("payload_too_large", f"Request body is larger than {limit} bytes.")

    async def async_dispatch(self, request, *args, **kwargs):
        if not isinstance(request, ASGIRequest):
            # A sync handler (the test client, a WSGI server) runs this view on an event loop
            # that ends with the request: finish its work and close its connections first.
            token = transient_loop.set(True)
            try:
                response = await self._dispatch(request, *args, **kwargs)
                if getattr(response, "streaming", False):
                    await _stream_buffer(response)
                return response
            finally:
                await shutdown_run()
                transient_loop.reset(token)
        return await self._dispatch(request, *args, **kwargs)

    async def _dispatch(self, request, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs
        self._ratelimit_headers = {}
        self.credentials_version = None
        self.cooling = None
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        ticket = await admission_enter()  # released once the call is reserved, or here
        try:
            self._check_body_size(request)
            self.plan = await self._gate_any(request)
            handler = getattr(self, request.method.lower(), None)
            if handler is None or request.method.lower() not in self.http_method_names:
                self.http_method_not_allowed(request)
            if inspect.iscoroutinefunction(handler):
                response = await handler(request, *args, **kwargs)
            else:  # DRF's own handlers (``options``) are sync; they must not block the loop either
                response = await db_call(handler, request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        finally:
            ticket.release()
        self.response = self.finalize_response(request, response, *args, **kwargs)
        for header, value in self._ratelimit_headers.items():
            self.response[header] = value
        self.response._resource_closers.append(self._references_untie)
        return self.response

    def _references_untie(self) -> None:
        """When the response closes (sent, or the client gone): undo DRF's view ↔ request ↔
        response references (``parser_context``, ``renderer_context``), so the call's objects are
        freed at once instead of being left to the cyclic collector."""
        request, response = self.request, self.response
        request.parser_context = None
        response.renderer_context = None
        self.request = self.response = None

    def json_body(self, request) -> dict:
        """Parse the body ourselves: not JSON-typed → 415, invalid JSON → 400 ``invalid_json``,
        non-object → 400. An empty body is judged as a missing object (400), as DRF does."""
        raw = request._request.body
        if raw:
            media_type, _params = parse_header_parameters(request.META.get("CONTENT_TYPE") or "")
            if media_type.lower() != "application/json":
                raise ApiError(
                    "unsupported_media_type",
                    f"Unsupported Content-Type {media_type[:100] or '(none)'!r}: send application/json.",
                )
        try:
            payload = json_strict_loads(raw or b"null")
        except JsonBodyError as exc:
            raise json_body_error(exc) from None
        if not isinstance(payload, dict):
            raise ApiError("invalid_request", "Request body must be a JSON object.")
        return payload

    @property
    def request_id(self) -> str:
        return getattr(self.request._request, "request_id", "")


async def _stream_buffer(response) -> None:
    """A sync handler iterates the body on another event loop, after this one has ended: read
    the stream to its end here and hand it over as a list of chunks."""
    chunks = [chunk async for chunk in response.streaming_content]
    response.streaming_content = chunks


PROVIDER_4XX = {
    "4XX": OpenApiResponse(
        ErrorResponseSerializer,
        description="The provider's 4xx relayed as `invalid_request` with `provider`.",
    )
}
# The proxy answers JSON whatever Accept says: no 406 (negotiated=False).
CHAT_ERRORS = error_responses(400, 401, 402, 413, 415, 429, 502, 503, 504, negotiated=False)
CHAT_RESPONSES = {
    (200, "application/json"): OpenApiResponse(
        OpenApiTypes.OBJECT, description="OpenAI chat.completion object, plus the `quota` block."
    ),
    (200, "text/event-stream"): OpenApiResponse(
        OpenApiTypes.STR, description='With "stream": true: chat.completion.chunk SSE events.'
    ),
    **CHAT_ERRORS,
    **PROVIDER_4XX,
}


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, not a string or a boolean that looks like one: the body is forwarded to
    the provider as sent, so what we account on must be what the provider reads."""

    def to_internal_value(self, data):
        if type(data) is not int:
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false`` only: ``"stream": "yes"`` must not start a stream."""

    default_error_messages = {"invalid": "Must be a JSON boolean (true or false)."}

    def to_internal_value(self, data):
        if type(data) is not bool:
            self.fail("invalid")
        return data


class _MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant", "tool", "developer", "function"])
    content = serializers.JSONField(required=False, allow_null=True)

    def validate_content(self, value):
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(part, dict) for part in value):
            return value
        raise serializers.ValidationError("Must be a string or a list of content parts.")


class ChatInputSerializer(serializers.Serializer):
    """The fields we account on; every other OpenAI field passes through to the provider."""

    model = serializers.CharField(required=False, max_length=128, allow_blank=False)
    messages = _MessageSerializer(many=True, allow_empty=False, max_length=2000)
    max_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1)
    max_completion_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1)
    n = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=8)
    stream = StrictBooleanField(required=False, default=False)
    stream_options = serializers.DictField(required=False, allow_null=True)


# Sampling fields the provider reads as numbers: a string or a boolean is refused, not relayed.
NUMBER_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
MESSAGE_ROLES = frozenset(_MessageSerializer().fields["role"].choices)
CHAT_MESSAGES_MAX = 2000


def _positive_int_or_none(value, *, maximum: int | None = None) -> bool:
    return value is None or (type(value) is int and value >= 1 and (maximum is None or value <= maximum))


def _chat_input_plain(payload: dict) -> dict | None:
    """``ChatInputSerializer``'s validated data for a body that is plainly valid, else None.

    Building the serializer (a deep copy of its fields, nested per message) costs a tenth of a
    proxied call's CPU. This accepts only what the serializer would accept unchanged (no
    coercion, no trimming); everything else goes to the serializer. A test checks that both
    agree on a corpus of valid and invalid bodies.
    """
    if "model" in payload:
        model = payload["model"]
        if not (isinstance(model, str) and model and model == model.strip() and len(model) <= 128):
            return None
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages or len(messages) > CHAT_MESSAGES_MAX:
        return None
    for message in messages:
        if not isinstance(message, dict) or type(message.get("role")) is not str:
            return None
        if message["role"] not in MESSAGE_ROLES:
            return None
        content = message.get("content")
        if not (
            content is None
            or type(content) is str
            or (isinstance(content, list) and all(isinstance(part, dict) for part in content))
        ):
            return None
    if not (
        _positive_int_or_none(payload.get("max_tokens"))
        and _positive_int_or_none(payload.get("max_completion_tokens"))
        and _positive_int_or_none(payload.get("n"), maximum=8)
    ):
        return None
    stream = payload.get("stream", False)
    stream_options = payload.get("stream_options")
    if type(stream) is not bool or not (stream_options is None or isinstance(stream_options, dict)):
        return None
    data = {"messages": messages, "stream": stream}
    for name in ("model", "max_tokens", "max_completion_tokens", "n", "stream_options"):
        if name in payload:
            data[name] = payload[name]
    return data


def _chat_call(
    view: ProxyApiView,
    request,
    payload: dict,
    *,
    service: str,
    endpoint: str,
    default_model: str,
    chain: list[str],
) -> ChatCall:
    if "model" in payload and not isinstance(payload["model"], str):
        raise ApiError("invalid_request", "model must be a string.", param="model")
    for name in NUMBER_FIELDS:
        value = payload.get(name)
        if value is not None and (type(value) is bool or not isinstance(value, int | float)):
            raise ApiError("invalid_request", f"{name} must be a number.", param=name)
    data = _chat_input_plain(payload)
    if data is None:  # anything unusual: the serializer decides, and words the errors
        serializer = ChatInputSerializer(data=payload)
        _raise_validation(serializer)
        data = serializer.validated_data
    plan = view.plan
    cap = plan.max_tokens_cap or settings.PROXY_MAX_TOKENS_CAP
    max_tokens = data.get("max_tokens") or data.get("max_completion_tokens")
    if max_tokens is not None and max_tokens > cap:
        raise ApiError(
            "invalid_request", f"max_tokens may not exceed {cap} on your plan.", param="max_tokens"
        )
    if max_tokens is None:
        max_tokens = min(plan.default_max_tokens or settings.PROXY_DEFAULT_MAX_TOKENS, cap)
    model = data.get("model") or default_model
    stream_options = data.get("stream_options") or {}
    return ChatCall(
        user=request.user,
        api_key_id=request.auth.key_id,
        service=service,
        endpoint=endpoint,
        payload={**payload, "model": model},
        requested_model=model,
        max_tokens=max_tokens,
        chain=chain,
        fallback_provider=plan.fallback_provider or "",
        stream=bool(data.get("stream")),
        client_wants_usage=bool(stream_options.get("include_usage")),
        request_id=view.request_id,
        plan=plan,
        credentials_version=view.credentials_version,
        cooling=view.cooling,
    )


def _chat_response(result):
    """A stream as is; a JSON answer with the model that served and OpenAI's token-limit headers."""
    if not isinstance(result, dict):
        return result
    headers = {
        "x-tollgate-served-model": str(result.get("model") or ""),
        **token_limit_headers(result.get("quota")),
    }
    return Response(result, headers=headers)


class DeepseekChatApi(ProxyApiView):
    """``POST /api/proxy/deepseek/chat``: DeepSeek chat completions + the llm_tokens quota block."""

    @extend_schema(
        operation_id="proxy_deepseek_chat",
        summary="DeepSeek chat completions",
        tags=["proxy"],
        request=ChatInputSerializer,
        responses=CHAT_RESPONSES,
    )
    async def post(self, request):
        call = _chat_call(
            self,
            request,
            self.json_body(request),
            service="deepseek",
            endpoint="/api/proxy/deepseek/chat",
            default_model="deepseek-chat",
            chain=["deepseek"],
        )
        return _chat_response(await chat_call_run(call))


class ChatCompletionsApi(ProxyApiView):
    """``POST /api/proxy/v1/chat/completions``: OpenAI-compatible, routed by the plan's weights."""

    @extend_schema(
        operation_id="proxy_chat_completions",
        summary="OpenAI-compatible chat completions, routed by your plan",
        tags=["proxy"],
        request=ChatInputSerializer,
        responses=CHAT_RESPONSES,
    )
    async def post(self, request):
        plan = self.plan
        chain = provider_chain(
            weights=plan.routing_weights or {}, fallback_provider=plan.fallback_provider or ""
        )
        call = _chat_call(
            self,
            request,
            self.json_body(request),
            service="router",
            endpoint="/api/proxy/v1/chat/completions",
            default_model="gpt-4o-mini",
            chain=chain,
        )
        return _chat_response(await chat_call_run(call))


@schema_named
class V2ChatApi(ProxyApiView):
    """``POST /api/v2/chat {"prompt","model"}``: the original design's alias, one user message."""

    class InputSerializer(serializers.Serializer):
        prompt = serializers.CharField(max_length=200_000)
        model = serializers.CharField(required=False, max_length=128)
        max_tokens = StrictIntegerField(required=False, min_value=1)

    @extend_schema(
        operation_id="proxy_v2_chat",
        summary="One-prompt chat",
        tags=["proxy"],
        request=InputSerializer,
        responses={200: OpenApiTypes.OBJECT, **CHAT_ERRORS, **PROVIDER_4XX},
    )
    async def post(self, request):
        serializer = self.InputSerializer(data=self.json_body(request))
        _raise_validation(serializer)
        data = serializer.validated_data
        payload = {
            "messages": [{"role": "user", "content": data["prompt"]}],
            "model": data.get("model") or "gpt-4o-mini",
        }
        if data.get("max_tokens"):
            payload["max_tokens"] = data["max_tokens"]
        plan = self.plan
        chain = provider_chain(
            weights=plan.routing_weights or {}, fallback_provider=plan.fallback_provider or ""
        )
        call = _chat_call(
            self,
            request,
            payload,
            service="router",
            endpoint="/api/v2/chat",
            default_model="gpt-4o-mini",
            chain=chain,
        )
        return _chat_response(await chat_call_run(call))


@schema_named
class InstantlySendApi(ProxyApiView):
    """``POST /api/proxy/instantly/send``: one email through Instantly, one ``emails`` unit."""

    class InputSerializer(serializers.Serializer):
        to = serializers.EmailField(max_length=254)
        subject = serializers.CharField(max_length=998)
        body = serializers.CharField(max_length=100_000)

    class OutputSerializer(serializers.Serializer):
        success = serializers.BooleanField()
        messageId = serializers.CharField()
        quota = serializers.DictField()

    ENDPOINT = "/api/proxy/instantly/send"

    def _record(self, request, started: float, status: int, error_code: str = "", emails: int = 0):
        return CallRecord(
            user_id=request.user.pk,
            api_key_id=request.auth.key_id,
            service="instantly",
            endpoint=self.ENDPOINT,
            status_code=status,
            provider="instantly",
            emails=emails,
            latency_ms=int((time.monotonic() - started) * 1000),
            request_id=self.request_id,
            error_code=error_code,
        )

    @extend_schema(
        operation_id="proxy_instantly_send",
        summary="Send one email through Instantly",
        tags=["proxy"],
        request=InputSerializer,
        responses={200: OutputSerializer, **CHAT_ERRORS, **PROVIDER_4XX},
    )
    async def post(self, request):
        serializer = self.InputSerializer(data=self.json_body(request))
        _raise_validation(serializer)
        # Detached: a disconnect between reserve and settle must not leave the hold behind.
        return await call_detached(self._send(request, serializer.validated_data))

    async def _send(self, request, data):
        started = time.monotonic()
        try:
            prepared = await fastlane.proxy_call_aprepare(
                user=request.user,
                provider="instantly",
                endpoint=self.ENDPOINT,
                requested_model="",
                prompt_tokens=0,
                max_tokens=0,
                meters={"emails": 1},
                plan=self.plan,
                credentials_version=self.credentials_version,
            )
        except (NoProviderKey, BudgetExhausted):
            error = ApiError("no_provider_available", "Email sending is not configured right now.")
            await db_call(
                proxy_call_settle, prepared=None, record=self._record(request, started, 503, error.code)
            )
            raise error from None
        except ApiError as exc:
            await db_call(
                proxy_call_settle,
                prepared=None,
                record=self._record(request, started, exc.status_code, exc.code),
            )
            raise
        admission_leave()  # reserved: not held through the provider call
        try:
            message_id = await upstreams.email_send(
                target=prepared.target, to=data["to"], subject=data["subject"], body=data["body"]
            )
        except upstreams.UpstreamFailure as exc:
            if exc.is_timeout:
                error = ApiError("upstream_timeout", "Instantly timed out.")
            elif exc.is_rate_limited:
                error = chain_exhausted_error(last_failure=exc, budget_fallback=False)
            else:
                error = ApiError("upstream_error", "Instantly failed to send the email.")
            await db_call(
                proxy_call_settle,
                prepared=prepared,
                record=self._record(request, started, error.status_code, error.code),
            )
            raise error from None
        except upstreams.UpstreamClientError as exc:
            await db_call(
                proxy_call_settle,
                prepared=prepared,
                record=self._record(request, started, exc.status, "provider_error"),
            )
            raise upstream_client_error(exc, provider="instantly") from None
        else:
            _event, block = await db_call(
                _settle_email,
                prepared=prepared,
                record=self._record(request, started, 200, emails=1),
                user=request.user,
            )
            return Response(
                self.OutputSerializer({"success": True, "messageId": message_id, "quota": block}).data
            )
        finally:  # any exit that did not settle (a bug, a cancellation) releases the hold
            if not prepared.closed:
                await asyncio.shield(db_call(proxy_call_abandon, prepared=prepared))


def _settle_email(*, prepared, record, user):
    event = proxy_call_settle(prepared=prepared, record=record)
    return event, funding_quota_block(funding=prepared.funding, user=user, meter="emails")


@schema_named
class UsageApi(ProxyApiView):
    """``GET /api/proxy/usage``: quota per meter and the last 100 calls, newest first."""

    class OutputSerializer(serializers.Serializer):
        success = serializers.BooleanField()
        quota = serializers.DictField()
        recentUsage = serializers.ListField(child=serializers.DictField())

    @extend_schema(
        operation_id="proxy_usage_get",
        summary="Quota per meter and your last 100 calls",
        tags=["proxy"],
        responses={200: OutputSerializer, **error_responses(401, 429, negotiated=False)},
    )
    async def get(self, request):
        data = await db_call(_usage_get, user=request.user)
        return Response(self.OutputSerializer(data).data)


def _usage_get(*, user) -> dict:
    statuses = quota_status_get(user=user)
    tokens = statuses.get("llm_tokens")
    reset_at = getattr(tokens, "reset_at", None)

    def meter(name):
        block = quota_block(statuses.get(name))
        return {"used": block["used"], "limit": block["limit"], "remaining": block["remaining"]}

    requests_block = quota_block(statuses.get("requests"))
    recent = []
    for event in usage_recent_list(user=user):
        row = {"service": event.service, "endpoint": event.endpoint}
        if event.service == "instantly":
            row["emailsSent"] = event.emails
        else:
            row["tokensUsed"] = event.total_tokens
        row.update({"statusCode": event.status_code, "createdAt": isoformat_z(event.created_at)})
        recent.append(row)
    return {
        "success": True,
        "quota": {
            "deepseek": meter("llm_tokens"),
            "instantly": meter("emails"),
            "requests": requests_block,
            "resetDate": isoformat_z(reset_at) if reset_at else None,
        },
        "recentUsage": recent,
    }
