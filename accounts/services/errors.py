"""The 400 a service raises for one bad input field; its own module (importing nothing of the
other service modules), since every one of them uses it and they import one another."""

from __future__ import annotations

from core.exceptions import ApiError


def field_error(field_name: str, message: str) -> ApiError:
    return ApiError("invalid_request", message, param=field_name, errors={field_name: [message]})
