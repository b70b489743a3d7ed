"""The chat body's two validators: ``ChatInputSerializer`` (the rule) and ``chat_input_plain``
(its fast twin). The twin must never accept what the serializer refuses, nor read a field
differently: it only skips the serializer's cost on plainly valid bodies."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from core.exceptions import ApiError
from proxy.call.input import NUMBER_FIELDS, ChatInputSerializer, chat_input_plain, chat_input_validate

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


HI = [{"role": "user", "content": "hi"}]

# (body, the param a refusal names — None: the body is valid)
TABLE = [
    ({"messages": HI}, None),
    ({"model": "gpt-4o", "messages": HI, "max_tokens": 5, "n": 2, "stream": True}, None),
    ({"messages": HI, "max_completion_tokens": 7, "stream_options": {"include_usage": True}}, None),
    ({"messages": HI, "stream_options": None, "max_tokens": None, "temperature": 0.5}, None),
    ({"model": " gpt-4o ", "messages": HI}, None),  # the serializer trims it; the twin defers
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}, None),
    ({"model": "gpt-4o"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [["user", "hi"]]}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
    ({"messages": [{"role": "user", "content": 42}]}, "messages"),
    ({"messages": [{"role": "user", "content": ["a"]}]}, "messages"),
    ({"messages": HI * 2001}, "messages"),
    ({"model": "", "messages": HI}, "model"),
    ({"model": None, "messages": HI}, "model"),
    ({"model": 7, "messages": HI}, "model"),
    ({"model": "m" * 129, "messages": HI}, "model"),
    ({"messages": HI, "max_tokens": 0}, "max_tokens"),
    ({"messages": HI, "max_tokens": "16"}, "max_tokens"),
    ({"messages": HI, "max_tokens": 16.0}, "max_tokens"),
    ({"messages": HI, "max_tokens": True}, "max_tokens"),
    ({"messages": HI, "max_completion_tokens": -1}, "max_completion_tokens"),
    ({"messages": HI, "n": 9}, "n"),
    ({"messages": HI, "n": "2"}, "n"),
    ({"messages": HI, "stream": "true"}, "stream"),
    ({"messages": HI, "stream": None}, "stream"),
    ({"messages": HI, "stream_options": []}, "stream_options"),
    ({"messages": HI, "temperature": "0.5"}, "temperature"),
    ({"messages": HI, "top_p": True}, "top_p"),
]


def _door(body: dict) -> tuple[dict | None, str | None]:
    """(validated data, None) or (None, the param of the 400) from the chat endpoints' check."""
    try:
        return chat_input_validate(body), None
    except ApiError as exc:
        return None, exc.param
    except ValidationError as exc:
        return None, next(iter(exc.detail))


def _door_only(body: dict, param: str) -> bool:
    """Refused by the door's own type checks, before either validator runs."""
    return param in NUMBER_FIELDS or (param == "model" and not isinstance(body["model"], str))


@pytest.mark.parametrize(("body", "param"), TABLE)
def test_both_validators_agree_on_the_table(body, param):
    data, refused = _door(body)
    serializer = ChatInputSerializer(data=body)
    accepted = serializer.is_valid()
    plain = chat_input_plain(body)

    assert refused == param
    if plain is not None:  # the twin takes only what the serializer takes, read the same way
        assert accepted, serializer.errors
        for name in FIELDS:
            assert plain.get(name) == serializer.validated_data.get(name), name
    if param is None:
        assert accepted, serializer.errors
        assert data == (plain if plain is not None else serializer.validated_data)
    elif not _door_only(body, param):
        assert (accepted, plain) == (False, None)
        assert next(iter(serializer.errors)) == param


def _agree(body: dict) -> None:
    plain = chat_input_plain(body)
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
    assert chat_input_plain(CORPUS[0]) is not None
    assert chat_input_plain(CORPUS[3]) == {
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
