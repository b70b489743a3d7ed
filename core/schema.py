"""OpenAPI pieces every app shares: the one error envelope of core/exceptions.py and the
documented error responses built from it, so each operation lists what it can really answer."""

from __future__ import annotations

from drf_spectacular.drainage import set_override
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

# Why each status happens; the codes are those of core.exceptions.ERROR_CODES.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid input: validation error (`invalid_request`, `errors` per field) or malformed JSON.",
    401: "Missing or invalid credentials (`invalid_api_key`).",
    402: "Not enough credits (`insufficient_credits`, with balance, cost and packs to buy).",
    403: "Authenticated but not allowed (`forbidden`): staff-only operation or missing CSRF token.",
    404: "No such object, or it belongs to someone else (`not_found`).",
    406: "The Accept header excludes application/json (`not_acceptable`).",
    409: "Conflicts with the current state (`conflict`).",
    413: "Request body larger than the server accepts (`payload_too_large`).",
    415: "Request body is not application/json (`unsupported_media_type`).",
    429: (
        "Rate limit or quota exceeded (`rate_limit_exceeded`, `quota_exceeded`), or too many failed "
        "API-key authentications from this address (`too_many_failed_authentications`); see Retry-After."
    ),
    500: "Unexpected server error (`server_error`).",
    502: "The payment provider or upstream failed (`upstream_error`).",
    503: "Temporarily unavailable or not configured on this server (`service_unavailable`).",
    504: "The upstream timed out (`upstream_timeout`).",
}

# DRF negotiates the renderer before anything else and only JSON is rendered, so any
# operation can answer 406 to an Accept header that excludes it.
ALWAYS: tuple[int, ...] = (406,)


class ErrorDetailSerializer(serializers.Serializer):
    """The body of ``error``; some codes add keys (``errors``, ``balance``, ``packs``…)."""

    message = serializers.CharField()
    type = serializers.CharField(
        help_text="Error family, e.g. `invalid_request_error`, `authentication_error`."
    )
    code = serializers.CharField(help_text="Machine-readable code, e.g. `invalid_request`, `not_found`.")
    param = serializers.CharField(allow_null=True)


class ErrorResponseSerializer(serializers.Serializer):
    """``{"error": {"message", "type", "code", "param", ...}}`` — every error under /api/."""

    error = ErrorDetailSerializer()


def error_responses(*statuses: int, negotiated: bool = True) -> dict[int, OpenApiResponse]:
    """``responses`` entries for these statuses, all with the error envelope. ``negotiated``
    adds 406; views that answer JSON whatever ``Accept`` says (the proxy) pass False."""
    unknown = set(statuses) - set(ERROR_DESCRIPTIONS)
    if unknown:
        raise ValueError(f"No description for error status {sorted(unknown)}")
    return {
        status: OpenApiResponse(response=ErrorResponseSerializer, description=ERROR_DESCRIPTIONS[status])
        for status in sorted(set(statuses) | (set(ALWAYS) if negotiated else set()))
    }


def schema_named(view_class):
    """Class decorator: name a view's nested serializers after the view in the schema.

    STYLE.md nests ``InputSerializer``/``OutputSerializer`` in every APIView, and the schema
    would otherwise hold dozens of colliding ``Output`` components. ``RegisterApi.OutputSerializer``
    becomes ``RegisterOutput``; serializers merely assigned to the view (shared ones) keep their
    own names.
    """
    prefix = view_class.__name__.removesuffix("Api")
    for attr, value in vars(view_class).items():
        if (
            isinstance(value, type)
            and issubclass(value, serializers.BaseSerializer)
            and value.__qualname__ == f"{view_class.__qualname__}.{attr}"
        ):
            set_override(value, "component_name", prefix + attr.removesuffix("Serializer"))
    return view_class
