"""The official ``openai`` SDK against a live Tollgate (uvicorn/ASGI), plain and streamed."""

import time

import httpx
import openai
import pytest

from billing.models import UsageCounter

from ..factories import global_key_set, plan_configure
from ..settled import usage_events_wait

pytestmark = pytest.mark.django_db(transaction=True)


def _spares_returned(workspace, timeout: float = 5.0):
    """The tokens counter once the worker gave back the spare reservations it holds for the
    workspace's next calls (``PROXY_QUOTA_BATCH_IDLE`` without a taker)."""
    deadline = time.monotonic() + timeout
    while True:
        counter = UsageCounter.objects.get(workspace=workspace, meter="llm_tokens")
        if counter.reserved == 0 or time.monotonic() > deadline:
            return counter
        time.sleep(0.05)


@pytest.fixture
def sdk(caller, fake_upstream, live_asgi):
    user, plaintext, _client = caller
    plan_configure(weights={"groq": 100})
    global_key_set("groq")
    return user, openai.OpenAI(base_url=f"{live_asgi}/api/proxy/v1", api_key=plaintext, max_retries=0)


def test_plain_completion(sdk):
    user, client = sdk

    completion = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hello!"}], max_tokens=50
    )

    assert completion.choices[0].message.content == "Hello! How can I help?"
    assert completion.usage.total_tokens == 25
    assert completion.model_extra["provider"] == "groq"
    assert completion.model_extra["quota"]["used"] == 25
    assert client.models.list().data[0].id


def test_stream_with_usage_chunk_settles_from_it(sdk, fake_upstream):
    user, client = sdk
    workspace = user.personal_workspace

    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Hello!"}],
        max_tokens=50,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "word " * 5
    assert chunks[-1].usage.total_tokens == 15  # 10 prompt + 5 completion, reported by the provider
    assert fake_upstream.requests[-1]["json"]["stream_options"] == {"include_usage": True}
    event = usage_events_wait(workspace)[0]
    assert (event.prompt_tokens, event.completion_tokens, event.is_estimated) == (10, 5, False)
    counter = UsageCounter.objects.get(workspace=workspace, meter="llm_tokens")
    assert (counter.used, counter.reserved) == (15, 0)


def test_stream_without_client_usage_request_still_settles_and_hides_the_usage_chunk(sdk, fake_upstream):
    user, client = sdk
    workspace = user.personal_workspace

    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], max_tokens=50, stream=True
        )
    )

    assert all(c.usage is None for c in chunks)
    assert fake_upstream.requests[-1]["json"]["stream_options"] == {"include_usage": True}
    assert usage_events_wait(workspace)[0].total_tokens == 15


def test_stream_without_usage_chunk_records_a_counted_estimate(sdk, fake_upstream):
    user, client = sdk
    workspace = user.personal_workspace
    fake_upstream.mode = "stream_no_usage"

    list(
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hello!"}], max_tokens=50, stream=True
        )
    )

    event = usage_events_wait(workspace)[0]
    assert event.is_estimated is True
    assert event.completion_tokens == 7  # 25 characters of content ≈ 7 tokens
    assert event.total_tokens > 0
    counter = UsageCounter.objects.get(workspace=workspace, meter="llm_tokens")
    assert counter.used == event.total_tokens and counter.reserved == 0


@pytest.mark.parametrize(
    "leave_after",
    [3, 51, None],  # 50 content events, then the finish event, then the usage chunk
    ids=["hangs-up-mid-stream", "hangs-up-just-before-the-usage-chunk", "reads-to-the-end"],
)
def test_a_stream_costs_the_same_whenever_the_client_hangs_up(caller, fake_upstream, live_asgi, leave_after):
    """Tollgate keeps reading the provider's stream after the client left (bounded by the call's
    deadline), so every stream is billed on the provider's own usage, whatever the timing."""
    user, plaintext, _client = caller
    workspace = user.personal_workspace
    plan_configure(weights={"groq": 100})
    global_key_set("groq")
    fake_upstream.stream_chunks = 50
    fake_upstream.chunk_delay = 0.01

    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "POST",
            f"{live_asgi}/api/proxy/v1/chat/completions",
            headers={"Authorization": f"Bearer {plaintext}"},
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "stream": True},
        ) as response,
    ):
        assert response.status_code == 200
        received = b""
        for chunk in response.iter_bytes():
            received += chunk
            if leave_after is not None and received.count(b"data:") >= leave_after:
                break  # the client goes away

    event = usage_events_wait(workspace)[0]
    assert event.is_estimated is False
    assert (event.prompt_tokens, event.completion_tokens) == (fake_upstream.prompt_tokens, 50)
    counter = _spares_returned(workspace)
    assert counter.reserved == 0 and counter.used == event.total_tokens


def test_stream_falls_back_when_the_first_provider_fails_before_the_first_byte(
    midday, caller, fake_upstream, live_asgi
):
    user, plaintext, _client = caller
    workspace = user.personal_workspace
    plan_configure(weights={"openrouter": 100}, fallback_provider="groq")
    global_key_set("openrouter")
    global_key_set("groq")
    fake_upstream.path_modes = {"/openrouter": "503"}
    client = openai.OpenAI(base_url=f"{live_asgi}/api/proxy/v1", api_key=plaintext, max_retries=0)

    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], max_tokens=50, stream=True
    ) as response:
        assert response.headers["X-Tollgate-Provider"] == "groq"
        assert response.headers["X-Tollgate-Fallback"] == "true"
        chunks = list(response.parse())

    assert chunks
    event = usage_events_wait(workspace)[0]
    assert (event.provider, event.is_fallback, event.total_tokens) == ("groq", True, 15)
    counter = _spares_returned(workspace)
    assert (counter.used, counter.reserved) == (15, 0)


def test_a_stream_is_cut_and_settled_at_the_call_deadline(caller, fake_upstream, live_asgi, settings):
    """A stream never outlives PROXY_CALL_DEADLINE_SECONDS, so the stale-reservation sweeper
    can never free the hold of a call that is still streaming; what flowed is charged."""
    user, plaintext, _client = caller
    workspace = user.personal_workspace
    plan_configure(weights={"groq": 100})
    global_key_set("groq")
    settings.PROXY_CALL_DEADLINE_SECONDS = 0.5
    fake_upstream.stream_chunks = 200
    fake_upstream.chunk_delay = 0.02  # 4 s of stream if nothing cut it

    started = time.monotonic()
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "POST",
            f"{live_asgi}/api/proxy/v1/chat/completions",
            headers={"Authorization": f"Bearer {plaintext}"},
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "stream": True},
        ) as response,
    ):
        assert response.status_code == 200
        body = b"".join(response.iter_bytes())
    elapsed = time.monotonic() - started

    assert elapsed < 3.0, elapsed
    assert 0 < body.count(b"data:") < 200
    event = usage_events_wait(workspace)[0]
    assert event.error_code == "deadline_exceeded"
    assert event.is_estimated is True and event.completion_tokens > 0
    counter = UsageCounter.objects.get(workspace=workspace, meter="llm_tokens")
    assert counter.reserved == 0 and counter.used == event.total_tokens
