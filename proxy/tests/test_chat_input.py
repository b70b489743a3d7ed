"""The plain-body shortcut of the chat endpoints must never accept what DRF's serializer refuses,
nor read a field differently: it only skips the serializer's cost on plainly valid bodies."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.apis import ChatInputSerializer, _chat_input_plain

FIELDS = ("model", "max_tokens", "max_completion_tokens", "n", "stream", "stream_options")

CORPUS = [
    {"messages": [{"role": "user", "content": "hi"}]},
    {"model": "gpt-4o", "messages": [{"role": "system", "content": None}, {"role": "user", "content": "x"}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "max_tokens": 5, "n": 2},
    {"messages": [{"role": "user"}], "stream": True, "stream_options": {"include_usage": True}},
    {"messages": [{"role": "tool", "content": "r"}], "max_completion_tokens": 7, "stream_options": None},
    {"messages": [{"role": "user", "content": "x"}], "max_tokens": None, "n": None},
    # refused by the serializer, or accepted only after coercion: must not pass the shortcut
    {"messages": []},
    {"messages": "hi"},
    {"messages": [{"role": "robot", "content": "x"}]},
    {"messages": [{"role": "user", "content": 3}]},
    {"messages": [{"role": "user", "content": ["a"]}]},
    {"messages": [["user", "x"]]},
    {"model": "", "messages": [{"role": "user", "content": "x"}]},
    {"model": " gpt-4o ", "messages": [{"role": "user", "content": "x"}]},
    {"model": None, "messages": [{"role": "user", "content": "x"}]},
    {"model": "m" * 129, "messages": [{"role": "user", "content": "x"}]},
    {"messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
    {"messages": [{"role": "user", "content": "x"}], "max_tokens": "16"},
    {"messages": [{"role": "user", "content": "x"}], "max_tokens": 16.0},
    {"messages": [{"role": "user", "content": "x"}], "max_tokens": True},
    {"messages": [{"role": "user", "content": "x"}], "n": 9},
    {"messages": [{"role": "user", "content": "x"}], "stream": "true"},
    {"messages": [{"role": "user", "content": "x"}], "stream": None},
    {"messages": [{"role": "user", "content": "x"}], "stream_options": []},
    {"messages": [{"role": "user", "content": "x"}] * 2001},
]


def _agree(body: dict) -> None:
    plain = _chat_input_plain(body)
    if plain is None:
        return  # the serializer decides: nothing to compare
    serializer = ChatInputSerializer(data=body)
    assert serializer.is_valid(), (body, serializer.errors)
    validated = serializer.validated_data
    for name in FIELDS:
        assert plain.get(name) == validated.get(name), (name, body)


@pytest.mark.parametrize("body", CORPUS)
def test_the_shortcut_agrees_with_the_serializer(body):
    _agree(body)


def test_the_shortcut_takes_the_plain_bodies_it_exists_for():
    assert _chat_input_plain(CORPUS[0]) is not None
    assert _chat_input_plain(CORPUS[3]) == {
        "messages": [{"role": "user"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10) | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "nobody", ""]) | json_values},
        optional={"content": json_values | st.text(max_size=5)},
    )
    | json_values,
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"messages": messages | json_values},
        optional={name: json_values | st.sampled_from([" m", "gpt-4o", 1, 8, 16]) for name in FIELDS},
    )
)
def test_the_shortcut_never_accepts_what_the_serializer_refuses(body):
    _agree(body)
