"""Property test over chat bodies: arbitrary Unicode (NUL, lone surrogates), numbers (NaN,
infinities, huge) and types in every field. Whatever the body, the answer is never a 500 and
no hold outlives the call. ``make fuzz`` runs it with ``TOLLGATE_FUZZ_EXAMPLES=500``."""

import json
import math
import os

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from billing.models import QuotaReservation
from proxy import budget

EXAMPLES = int(os.environ.get("TOLLGATE_FUZZ_EXAMPLES", "25"))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40),
    st.sampled_from(["\x00", "\ud800", "a\udfffb", "yes", "100", "", " gpt-4o "]),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.one_of(st.sampled_from(["user", "system", "assistant"]), values), "content": values}
    ),
    max_size=3,
)
bodies = st.fixed_dictionaries(
    {"messages": st.one_of(messages, values)},
    optional={
        name: values
        for name in ("model", "stream", "max_tokens", "n", "temperature", "top_p", "tools", "stream_options")
    },
)


def _encode(body) -> bytes:
    """JSON as a client could send it: NaN/Infinity literals and \\u escapes included."""
    return json.dumps(body, allow_nan=True, ensure_ascii=True).encode()


@pytest.mark.fuzz
@pytest.mark.django_db
@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 25,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
def test_no_chat_body_answers_500_or_leaves_a_hold(caller, settings, body):
    user, _plaintext, client = caller
    workspace = user.personal_workspace
    settings.SANDBOX_PROVIDER_ENABLED = True  # no provider key: the in-process sandbox answers

    response = client.generic(
        "POST", "/api/proxy/v1/chat/completions", _encode(body), content_type="application/json"
    )

    assert response.status_code < 500, response.content[:500]
    if response.status_code >= 400:
        assert json.loads(response.content)["error"]["code"]
    else:
        b"".join(response) if response.streaming else response.content  # read a stream to its end
    assert not QuotaReservation.objects.filter(
        workspace=workspace, status=QuotaReservation.Status.HELD
    ).exists()
    assert budget.budget_spent_get(day=timezone.now().date()) == 0  # the sandbox costs nothing


def test_the_encoder_sends_what_an_attacker_would():
    raw = _encode({"a": float("nan"), "b": "\x00\ud800", "c": math.inf})
    assert raw == b'{"a": NaN, "b": "\\u0000\\ud800", "c": Infinity}'
