import json
from decimal import Decimal

import pytest

from core.renderers import JSONRenderer


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (Decimal("0.000004"), b"0.000004"),
        (Decimal("0.000000"), b"0"),
        (Decimal("12.500000"), b"12.5"),
        (Decimal("-0.00001"), b"-0.00001"),
        (Decimal("1E-7"), b"0.0000001"),
        (Decimal("3"), b"3"),
    ],
)
def test_a_decimal_is_a_plain_number_never_exponent_notation(value, written):
    body = JSONRenderer().render({"cost": value, "text": "4e-06"})

    assert body == b'{"cost":' + written + b',"text":"4e-06"}'
    assert json.loads(body)["cost"] == float(value)


def test_text_that_looks_like_the_marker_stays_text():
    body = JSONRenderer().render({"content": "__decimal_0000000000000000:1", "cost": Decimal("0.5")})

    assert json.loads(body) == {"content": "__decimal_0000000000000000:1", "cost": 0.5}
