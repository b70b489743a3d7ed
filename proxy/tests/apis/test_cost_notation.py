"""A call's ``cost`` is a plain number in the JSON answer, never exponent notation."""

import pytest

from ..factories import global_key_set, plan_configure

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_tiny_cost_is_written_in_fixed_notation(caller, fake_upstream):
    _user, _plaintext, client = caller
    plan_configure(weights={"openai": 100})
    global_key_set("openai")

    response = client.post(
        "/api/proxy/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20},
        format="json",
    )

    assert response.status_code == 200, response.content
    # 10 prompt tokens at $0.15/M + 15 completion tokens at $0.60/M = $0.0000105, kept to 6 places.
    assert b'"cost":0.000011,' in response.content
    assert b"e-0" not in response.content
