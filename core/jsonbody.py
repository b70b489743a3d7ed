"""Strict JSON at the door: what PostgreSQL, JSON encoders and providers accept, nothing else.

Python's ``json`` accepts ``NaN``/``Infinity``, turns ``1e999`` into ``inf`` and decodes
``"\\u0000"`` and lone surrogates (``"\\ud800"``) into strings that PostgreSQL refuses (NUL) or
that no encoder can write back (surrogates). Each of those once reached the call path, failed
after the holds were taken and answered 500. Every JSON body the API reads is parsed here, so
such input is a 400 before anything is reserved.
"""

from __future__ import annotations

import json
import math

from rest_framework.parsers import JSONParser

from core.exceptions import ApiError


class JsonBodyError(ValueError):
    """The body is not acceptable JSON. ``param`` is the dotted path of the offending value."""

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


def _constant_refuse(name: str):
    raise JsonBodyError(f"{name} is not a JSON number: send a finite number.")


def _float_finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonBodyError(f"Number {text[:40]} is out of range: send a finite number.")
    return value


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored or relayed (NUL byte, unpaired surrogate), else None."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate"
    return None


def _walk(value) -> None:
    """Check every string and key, iteratively (a deep body cannot overflow the stack here)."""
    stack = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                raise JsonBodyError(f"Text {problem}.", param=path or None)
        elif isinstance(item, dict):
            for key, child in item.items():
                problem = text_problem(key)
                if problem:
                    raise JsonBodyError(f"A key {problem}.", param=path or None)
                stack.append((child, f"{path}.{key}" if path else key))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]") for index, child in enumerate(item))


def json_strict_loads(raw: bytes | str):
    """Parse ``raw`` as JSON and refuse what cannot be stored or relayed. Raises ``JsonBodyError``.

    A NUL or a surrogate can only enter through a ``\\u`` escape (raw control characters and
    invalid UTF-8 are refused by the decoder), so the walk runs only when one is present: the
    common body pays one substring search.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        value = json.loads(text, parse_constant=_constant_refuse, parse_float=_float_finite)
    except JsonBodyError:
        raise
    except RecursionError:
        raise JsonBodyError("JSON is nested too deeply.") from None
    except (ValueError, UnicodeDecodeError):
        raise JsonBodyError("Request body is not valid JSON.") from None
    if "\\u" in text:
        _walk(value)
    return value


class StrictJSONParser(JSONParser):
    """DRF's JSON parser through ``json_strict_loads``: every API refuses what the proxy refuses."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return json_strict_loads(stream.read() if stream is not None else b"")
        except JsonBodyError as exc:
            raise json_body_error(exc) from None


def json_body_error(exc: JsonBodyError):
    """The API error of a refused body: ``invalid_request`` naming the field when one is at
    fault, else ``invalid_json``."""
    if exc.param is None:
        return ApiError("invalid_json", exc.message)
    return ApiError("invalid_request", exc.message, param=exc.param)
