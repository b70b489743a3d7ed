"""The call's input: body size and JSON at the door, then the chat body's validation.

``ChatInputSerializer`` is the rule; ``chat_input_plain`` is its fast twin for plainly valid
bodies (building the serializer costs a tenth of a call's CPU). The twin accepts only what the
serializer accepts unchanged and hands everything else to it; ``proxy/tests/test_chat_input.py``
checks that they agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.utils.http import parse_header_parameters
from rest_framework import serializers

from core.exceptions import ApiError
from core.jsonbody import JsonBodyError, json_body_error, json_strict_loads

from ..estimate import prompt_tokens_estimate


def body_size_check(request) -> None:
    """413 for a body over ``PROXY_MAX_BODY_BYTES``, declared or read, before any parsing."""
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


def json_body(request) -> dict:
    """The body as a JSON object: not JSON-typed → 415, invalid JSON → 400 ``invalid_json``,
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


def validated(serializer) -> dict:
    """The serializer's validated data, or its ValidationError (400 with ``param``)."""
    if not serializer.is_valid():
        raise serializers.ValidationError(serializer.errors)
    return serializer.validated_data


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


def chat_input_plain(payload: dict) -> dict | None:
    """``ChatInputSerializer``'s validated data for a body that is plainly valid, else None
    (no coercion, no trimming: anything unusual goes to the serializer)."""
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


def chat_input_validate(payload: dict) -> dict:
    """The chat body's fields we account on, validated; 400 with ``param`` otherwise."""
    if "model" in payload and not isinstance(payload["model"], str):
        raise ApiError("invalid_request", "model must be a string.", param="model")
    for name in NUMBER_FIELDS:
        value = payload.get(name)
        if value is not None and (type(value) is bool or not isinstance(value, int | float)):
            raise ApiError("invalid_request", f"{name} must be a number.", param=name)
    data = chat_input_plain(payload)
    if data is None:  # anything unusual: the serializer decides, and words the errors
        data = validated(ChatInputSerializer(data=payload))
    return data


@dataclass
class ChatCall:
    """A validated chat request and the workspace it is made for (the key's)."""

    workspace: object
    api_key_id: int | None
    service: str  # "deepseek" | "router"
    endpoint: str
    payload: dict
    requested_model: str
    max_tokens: int
    chain: list[str]
    fallback_provider: str = ""
    stream: bool = False
    client_wants_usage: bool = False
    request_id: str = ""
    plan: object | None = None  # the caller's billing Plan, resolved once per request
    credentials_version: bytes | None = None  # read by the gate (provider-key cache tag)
    cooling: frozenset[str] | None = None  # providers in cooldown, when the gate read them
    prompt_tokens: int = field(default=0)
    # The key's own spend controls, from its cached identity (no query): limits to reserve on
    # and the models it may call (empty: all).
    key_limits: tuple = ()
    allowed_models: tuple = ()
    # The key creator's membership and its monthly caps (held in the same reservation).
    member_id: int | None = None
    member_limits: tuple = ()
    user_id: int | None = None  # the key's creator: the member the caps and their alerts name

    def __post_init__(self):
        self.prompt_tokens = prompt_tokens_estimate(self.payload)

    @property
    def reserve_tokens(self) -> int:
        return self.prompt_tokens + self.max_tokens * int(self.payload.get("n") or 1)


def chat_call_build(
    view,
    request,
    payload: dict,
    *,
    service: str,
    endpoint: str,
    default_model: str,
    chain: list[str],
) -> ChatCall:
    """The ``ChatCall`` of a chat body: validated, ``max_tokens`` within the plan's cap."""
    data = chat_input_validate(payload)
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
        workspace=view.workspace,
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
        key_limits=request.auth.limits,
        allowed_models=request.auth.allowed_models,
        member_id=request.auth.member_id,
        member_limits=request.auth.member_limits,
        user_id=request.auth.user_id,
    )
