"""Proxy endpoints: parse → call (``proxy.call``) → serialize, on ``ProxyApiView``'s door."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from accounts.tenancy import workspace_context_get
from core.exceptions import ApiError
from core.schema import ErrorResponseSerializer, error_responses, schema_named

from .call.dialect import stream_translate
from .call.embeddings import EmbeddingsInputSerializer, embeddings_call_build, embeddings_call_run
from .call.input import ChatInputSerializer, StrictIntegerField, chat_call_build, json_body, validated
from .call.upstream import EmailCall, chat_call_run, email_call_run
from .call.view import ProxyApiView
from .dbcall import db_call
from .ratelimit import token_limit_headers
from .router import provider_chain
from .selectors import usage_summary_get
from .translate import TranslationError
from .translate.anthropic import error_body
from .translate.messages import ChatToMessagesStream, chat_to_message, messages_to_chat
from .translate.responses import ChatToResponsesStream, chat_to_response, responses_to_chat

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


class AnthropicErrorDetailSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="Anthropic's error type, e.g. `rate_limit_error`.")
    message = serializers.CharField()
    code = serializers.CharField(required=False, help_text="Tollgate's code, e.g. `quota_exceeded`.")


class AnthropicErrorSerializer(serializers.Serializer):
    """``{"type": "error", "error": {"type", "message", "code"}}``: Anthropic's shape."""

    type = serializers.ChoiceField(choices=["error"])
    error = AnthropicErrorDetailSerializer()


# /v1/messages answers its errors in Anthropic's shape, for the statuses chat can answer.
MESSAGES_ERRORS = {
    status: OpenApiResponse(AnthropicErrorSerializer, description=response.description)
    for status, response in CHAT_ERRORS.items()
}


def _chat_response(result, reshape=None):
    """A stream as is; a JSON answer with the model that served and OpenAI's token-limit headers.

    ``reshape(body) -> body`` turns the chat answer into another API's (Messages, Responses).
    """
    if not isinstance(result, dict):
        return result
    headers = {
        "x-tollgate-served-model": str(result.get("model") or ""),
        **token_limit_headers(result.get("quota")),
    }
    return Response(reshape(result) if reshape else result, headers=headers)


def _translated(build, body: dict) -> dict:
    """A chat payload from another API's request; what cannot be carried is a 400 naming it."""
    try:
        return build(body)
    except TranslationError as exc:
        raise ApiError("invalid_request", exc.message, param=exc.param) from None


async def _bridged_call(view, request, *, to_chat, endpoint: str, streamer, answer):
    """A call in another API's dialect (Messages, Responses): its request as a chat payload, the
    one chat call, and the answer — or each streamed chunk — translated back."""
    body = json_body(request)
    payload = _translated(to_chat, body)
    if payload.get("stream"):
        payload["stream_options"] = {"include_usage": True}  # the closing event carries usage
    call = chat_call_build(
        view,
        request,
        payload,
        service="router",
        endpoint=endpoint,
        default_model="gpt-4o-mini",
        chain=_plan_chain(view.plan),
    )
    result = await chat_call_run(call)
    if not isinstance(result, dict):
        return stream_translate(result, streamer(call, body))
    return _chat_response(result, lambda chat: {**answer(chat, body), "quota": chat["quota"]})


def _plan_chain(plan) -> list[str]:
    return provider_chain(weights=plan.routing_weights or {}, fallback_provider=plan.fallback_provider or "")


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
        call = chat_call_build(
            self,
            request,
            json_body(request),
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
        chain = _plan_chain(self.plan)
        call = chat_call_build(
            self,
            request,
            json_body(request),
            service="router",
            endpoint="/api/proxy/v1/chat/completions",
            default_model="gpt-4o-mini",
            chain=chain,
        )
        return _chat_response(await chat_call_run(call))


class MessagesApi(ProxyApiView):
    """``POST /api/proxy/v1/messages``: Anthropic's Messages API, for the ``anthropic`` SDK.

    Any routed model serves it (bridged from chat completions, ``proxy.translate.messages``);
    the key may come in ``x-api-key`` as Anthropic's clients send it. Errors use Anthropic's
    shape, with Tollgate's ``code`` kept.
    """

    async def async_dispatch(self, request, *args, **kwargs):
        api_key = request.META.get("HTTP_X_API_KEY")
        if api_key and "HTTP_AUTHORIZATION" not in request.META:
            request.META["HTTP_AUTHORIZATION"] = f"Bearer {api_key}"
        return await super().async_dispatch(request, *args, **kwargs)

    def finalize_response(self, request, response, *args, **kwargs):
        data = getattr(response, "data", None)
        if response.status_code >= 400 and isinstance(data, dict) and isinstance(data.get("error"), dict):
            error = data["error"]
            response.data = error_body(
                status=response.status_code, message=str(error.get("message") or ""), code=error.get("code")
            )
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(
        operation_id="proxy_messages",
        summary="Anthropic Messages API (any routed model)",
        tags=["proxy"],
        request=OpenApiTypes.OBJECT,
        responses={
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT, description="An Anthropic Message."
            ),
            (200, "text/event-stream"): OpenApiResponse(
                OpenApiTypes.STR, description="With `stream: true`: Anthropic's message stream events."
            ),
            **MESSAGES_ERRORS,
        },
    )
    async def post(self, request):
        return await _bridged_call(
            self,
            request,
            to_chat=messages_to_chat,
            endpoint="/api/proxy/v1/messages",
            streamer=lambda call, body: ChatToMessagesStream(
                model=call.requested_model, input_tokens_estimate=call.prompt_tokens
            ),
            answer=lambda chat, body: chat_to_message(chat, model=chat["model"]),
        )


class ResponsesApi(ProxyApiView):
    """``POST /api/proxy/v1/responses``: OpenAI's Responses API, bridged from chat completions
    (``proxy.translate.responses`` says what is carried), plain and streamed."""

    @extend_schema(
        operation_id="proxy_responses",
        summary="OpenAI Responses API (any routed model)",
        tags=["proxy"],
        request=OpenApiTypes.OBJECT,
        responses={
            (200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT, description="A Response object."),
            (200, "text/event-stream"): OpenApiResponse(
                OpenApiTypes.STR, description="With `stream: true`: `response.*` events."
            ),
            **CHAT_ERRORS,
        },
    )
    async def post(self, request):
        return await _bridged_call(
            self,
            request,
            to_chat=responses_to_chat,
            endpoint="/api/proxy/v1/responses",
            streamer=lambda call, body: ChatToResponsesStream(body=body, model=call.requested_model),
            answer=lambda chat, body: chat_to_response(chat, body=body, model=chat["model"]),
        )


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
        data = validated(self.InputSerializer(data=json_body(request)))
        payload = {
            "messages": [{"role": "user", "content": data["prompt"]}],
            "model": data.get("model") or "gpt-4o-mini",
        }
        if data.get("max_tokens"):
            payload["max_tokens"] = data["max_tokens"]
        chain = _plan_chain(self.plan)
        call = chat_call_build(
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

    @extend_schema(
        operation_id="proxy_instantly_send",
        summary="Send one email through Instantly",
        tags=["proxy"],
        request=InputSerializer,
        responses={200: OutputSerializer, **CHAT_ERRORS, **PROVIDER_4XX},
    )
    async def post(self, request):
        data = validated(self.InputSerializer(data=json_body(request)))
        call = EmailCall(
            workspace=self.workspace,
            api_key_id=request.auth.key_id,
            plan=self.plan,
            credentials_version=self.credentials_version,
            request_id=self.request_id,
            to=data["to"],
            subject=data["subject"],
            body=data["body"],
            key_limits=request.auth.limits,
            member_id=request.auth.member_id,
            member_limits=request.auth.member_limits,
            user_id=request.auth.user_id,
        )
        message_id, block = await email_call_run(call)
        return Response(
            self.OutputSerializer({"success": True, "messageId": message_id, "quota": block}).data
        )


@schema_named
class UsageApi(ProxyApiView):
    """``GET /api/proxy/usage``: the key's workspace's quota per meter and its last 100 calls
    (every member's), newest first."""

    class OutputSerializer(serializers.Serializer):
        success = serializers.BooleanField()
        quota = serializers.DictField()
        recentUsage = serializers.ListField(child=serializers.DictField())

    @extend_schema(
        operation_id="proxy_usage_get",
        summary="Quota per meter and your workspace's last 100 calls",
        tags=["proxy"],
        responses={200: OutputSerializer, **error_responses(401, 429, negotiated=False)},
    )
    async def get(self, request):
        data = await db_call(_usage_summary, request)
        return Response(self.OutputSerializer(data).data)


def _usage_summary(request) -> dict:
    """The usage of the key's workspace, for a member allowed to read it (``usage.read``)."""
    context = workspace_context_get(request)
    context.require("usage.read")
    return usage_summary_get(workspace=context.workspace)


class EmbeddingsApi(ProxyApiView):
    """``POST /api/proxy/v1/embeddings``: OpenAI embeddings, routed by the model's exact routes."""

    @extend_schema(
        operation_id="proxy_embeddings",
        summary="OpenAI-compatible embeddings",
        tags=["proxy"],
        request=EmbeddingsInputSerializer,
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT, description="OpenAI embeddings list, plus the `quota` block."
            ),
            **error_responses(400, 401, 402, 404, 413, 415, 429, 502, 503, 504, negotiated=False),
            **PROVIDER_4XX,
        },
    )
    async def post(self, request):
        call = embeddings_call_build(self, request, json_body(request))
        return _chat_response(await embeddings_call_run(call))
