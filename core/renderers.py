"""JSON with decimals written as plain numbers: ``0.000004``, never ``4e-06``.

DRF turns a ``Decimal`` into a ``float``, and Python prints small floats in exponent notation,
so a call's ``cost`` of four millionths of a dollar reached clients as ``4e-06``. A number is
kept a number (clients do arithmetic on it), written in fixed notation from the Decimal itself.
"""

from __future__ import annotations

import re
import secrets
from decimal import Decimal

from rest_framework import renderers
from rest_framework.utils.encoders import JSONEncoder

# A marker no client text can forge: random per process.
_MARK = f"__decimal_{secrets.token_hex(8)}:"
_MARKED = re.compile(rb'"' + _MARK.encode() + rb'(-?[0-9]+(?:\.[0-9]+)?)"')


class DecimalFixedEncoder(JSONEncoder):
    def default(self, obj):
        if isinstance(obj, Decimal) and obj.is_finite():
            text = format(obj, "f")
            return _MARK + (text if "." not in text else text.rstrip("0").rstrip(".") or "0")
        return super().default(obj)


class JSONRenderer(renderers.JSONRenderer):
    encoder_class = DecimalFixedEncoder

    def render(self, data, accepted_media_type=None, renderer_context=None):
        body = super().render(data, accepted_media_type, renderer_context)
        if _MARK.encode() not in body:
            return body
        return _MARKED.sub(rb"\1", body)
