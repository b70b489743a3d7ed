"""The one error type of the API and the DRF exception handler that renders it.

Every error under ``/api/`` has the OpenAI shape::

    {"error": {"message": "...", "type": "...", "code": "...", "param": null, ...extra}}
"""

from __future__ import annotations

import logging
import math

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError as DbInterfaceError
from django.db import OperationalError as DbOperationalError
from django.http import Http404
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response

logger = logging.getLogger("tollgate.errors")

try:  # the shared cache (rate limits, budget counters, key cache) is Redis in production
    from django_redis.exceptions import ConnectionInterrupted
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    CACHE_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
        ConnectionInterrupted,
        RedisConnectionError,
        RedisTimeoutError,
    )
except ImportError:  # pragma: no cover - django-redis is a pinned dependency
    CACHE_UNAVAILABLE_ERRORS = ()

# code -> (http status, type)
ERROR_CODES: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "invalid_request_error"),
    "invalid_json": (400, "invalid_request_error"),
    "invalid_api_key": (401, "authentication_error"),
    "not_authenticated": (401, "authentication_error"),
    "insufficient_credits": (402, "insufficient_credits"),
    "forbidden": (403, "permission_error"),
    "not_found": (404, "not_found_error"),
    "method_not_allowed": (405, "invalid_request_error"),
    "not_acceptable": (406, "invalid_request_error"),
    "conflict": (409, "invalid_request_error"),
    "invitation_gone": (410, "invalid_request_error"),  # a workspace invitation used, revoked or expired
    "email_unverified": (403, "permission_error"),  # EMAIL_VERIFICATION=mandatory, address unconfirmed
    "payload_too_large": (413, "invalid_request_error"),
    "headers_too_large": (431, "invalid_request_error"),  # the server's head bound (core/workers.py)
    "unsupported_media_type": (415, "invalid_request_error"),
    "model_not_found": (404, "invalid_request_error"),
    "rate_limit_exceeded": (429, "rate_limit_error"),
    "upstream_rate_limited": (429, "rate_limit_error"),
    "quota_exceeded": (429, "quota_exceeded"),
    "key_limit_exceeded": (429, "key_limit_exceeded"),  # the API key's own limit (not the plan's)
    "member_limit_exceeded": (429, "member_limit_exceeded"),  # the key creator's monthly cap
    "workspace_suspended": (403, "permission_error"),  # the operator suspended the workspace
    "model_not_allowed": (403, "permission_error"),  # not on the API key's model allow-list
    "too_many_failed_authentications": (429, "rate_limit_error"),
    "server_error": (500, "server_error"),
    "upstream_error": (502, "upstream_error"),
    "no_provider_available": (503, "service_unavailable"),
    "service_unavailable": (503, "service_unavailable"),
    "upstream_timeout": (504, "upstream_error"),
}

# Codes a client may retry as is (after ``Retry-After``): every other error is sent with
# ``x-should-retry: false``, so the OpenAI SDK does not resend a call that cannot succeed
# (a quota until next month, a balance, a bad request, a provider key nobody configured).
RETRYABLE_CODES = frozenset(
    {
        "rate_limit_exceeded",
        "too_many_failed_authentications",
        "upstream_rate_limited",
        "upstream_error",
        "upstream_timeout",
        "service_unavailable",
        "server_error",
    }
)


def retry_after_seconds(seconds: float) -> int:
    """Whole seconds to wait, rounded UP: a client that waits what we said is past the window."""
    return max(1, math.ceil(seconds))


class ApiError(Exception):
    """A client-facing error. Services raise it; the exception handler renders it."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
        **extra,
    ):
        super().__init__(message)
        default_status, error_type = ERROR_CODES.get(code, (400, "invalid_request_error"))
        self.code = code
        self.message = message
        self.param = param
        self.status_code = status_code or default_status
        self.error_type = error_type
        self.headers = headers or {}
        self.extra = extra

    def as_dict(self) -> dict:
        body = {
            "message": self.message,
            "type": self.error_type,
            "code": self.code,
            "param": self.param,
        }
        body.update(self.extra)
        return {"error": body}

    @property
    def should_retry(self) -> bool:
        return self.code in RETRYABLE_CODES

    def as_response(self) -> Response:
        headers = {"x-should-retry": "true" if self.should_retry else "false", **self.headers}
        return Response(self.as_dict(), status=self.status_code, headers=headers)


def service_unavailable_error(*, what: str, exc: BaseException) -> ApiError:
    """The retryable 503 for a store that is down (``what``: "database" or "cache").

    The driver's message may name hosts or users, so only the exception's type is logged and
    nothing of it is returned.
    """
    logger.error(f"{what} unavailable", extra={"error": type(exc).__name__})
    return ApiError(
        "service_unavailable",
        "The service is temporarily unavailable. Retry shortly.",
        headers={"Retry-After": "5"},
    )


def error_body(code: str, message: str, *, param: str | None = None, **extra) -> dict:
    return ApiError(code, message, param=param, **extra).as_dict()


def _first_field(detail) -> str | None:
    if isinstance(detail, dict):
        for key in detail:
            if key != "non_field_errors":
                return str(key)
    return None


def _flatten_message(detail) -> str:
    if isinstance(detail, dict):
        parts = []
        for key, value in detail.items():
            text = _flatten_message(value)
            parts.append(text if key in ("non_field_errors", "detail") else f"{key}: {text}")
        return "; ".join(parts)
    if isinstance(detail, list):
        return " ".join(_flatten_message(item) for item in detail)
    return str(detail)


def api_exception_handler(exc, context):
    """DRF exception handler: every error becomes the OpenAI-shaped JSON body."""
    if isinstance(exc, ApiError):
        return exc.as_response()
    if isinstance(exc, Ratelimited):
        return ApiError(
            "rate_limit_exceeded", "Rate limit exceeded.", headers={"Retry-After": "60"}
        ).as_response()
    if isinstance(exc, RequestDataTooBig):
        # Django refuses to read a body over DATA_UPLOAD_MAX_MEMORY_SIZE: the client's fault.
        return ApiError(
            "payload_too_large",
            f"Request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
        ).as_response()
    if isinstance(exc, RecursionError):
        # The JSON parser recursed past Python's limit: a body nested absurdly deep.
        return ApiError("invalid_json", "Malformed request body: JSON is nested too deeply.").as_response()
    if isinstance(exc, DbOperationalError | DbInterfaceError):
        # Database down, restarting or refusing connections: a retryable 503, not a 500. The
        # driver's message may name hosts or users, so it is logged (type only) and not returned.
        return service_unavailable_error(what="database", exc=exc).as_response()
    if CACHE_UNAVAILABLE_ERRORS and isinstance(exc, CACHE_UNAVAILABLE_ERRORS):
        # Redis down: rate limits and budget counters cannot be checked, so calls fail closed
        # (nothing is reserved or charged) until it is back; counters are rebuilt from the DB then.
        return service_unavailable_error(what="cache", exc=exc).as_response()
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()

    if isinstance(exc, drf_exceptions.ValidationError):
        detail = exc.detail
        return ApiError(
            "invalid_request",
            _flatten_message(detail) or "Invalid request.",
            param=_first_field(detail),
            errors=detail if isinstance(detail, dict) else {"non_field_errors": detail},
        ).as_response()
    if isinstance(exc, drf_exceptions.ParseError):
        return ApiError("invalid_json", f"Malformed request body: {exc.detail}").as_response()
    mapping = {
        drf_exceptions.AuthenticationFailed: "invalid_api_key",
        drf_exceptions.NotAuthenticated: "invalid_api_key",
        drf_exceptions.PermissionDenied: "forbidden",
        drf_exceptions.NotFound: "not_found",
        drf_exceptions.MethodNotAllowed: "method_not_allowed",
        drf_exceptions.NotAcceptable: "not_acceptable",
        drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
        drf_exceptions.Throttled: "rate_limit_exceeded",
    }
    for exc_type, code in mapping.items():
        if isinstance(exc, exc_type):
            headers = {}
            if isinstance(exc, drf_exceptions.Throttled) and exc.wait:
                headers["Retry-After"] = str(retry_after_seconds(exc.wait))
            if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
                headers["WWW-Authenticate"] = 'Bearer realm="api"'
            return ApiError(code, str(exc.detail), headers=headers).as_response()
    if isinstance(exc, drf_exceptions.APIException):
        code = "server_error" if exc.status_code >= 500 else "invalid_request"
        return ApiError(code, str(exc.detail), status_code=exc.status_code).as_response()
    logger.exception("unhandled API error", extra={"view": str(context.get("view"))})
    return ApiError(
        "server_error", "Internal server error.", status_code=status.HTTP_500_INTERNAL_SERVER_ERROR
    ).as_response()
