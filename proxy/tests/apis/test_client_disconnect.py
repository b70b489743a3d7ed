"""A client that goes away between reserve and settle must not leave money on hold.

Regression for the bench's "reservations left held after every run": under ASGI, Django cancels
the view when its client disconnects; the reservation taken before the upstream call was then
never settled nor released. The call now runs to its end (settle + usage event) whatever the
client does. Served by uvicorn in a thread, as in production.
"""

import json
import socket
import time
from urllib.parse import urlsplit

import pytest

from billing.models import QuotaReservation, UsageCounter
from proxy.models import UsageEvent

from ..factories import global_key_set, plan_configure
from ..live import uvicorn_served

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/proxy/v1/chat/completions"


def _post_and_hang_up(base_url: str, key: str, body: dict, *, upstream) -> None:
    """Send a complete request, then close the socket once the provider is working on it."""
    parts = urlsplit(base_url)
    raw = json.dumps(body).encode()
    request = (
        f"POST {URL} HTTP/1.1\r\nHost: {parts.hostname}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
    ).encode() + raw
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + 15
        while not upstream.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        assert upstream.requests, "the call never reached the provider"


def _settled(workspace, timeout: float = 10.0) -> list[UsageEvent]:
    """Wait until the call is on the books: one event and nothing held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = list(UsageEvent.objects.filter(workspace=workspace))
        held = QuotaReservation.objects.filter(workspace=workspace, status="held").exists()
        if events and not held:
            return events
        time.sleep(0.05)
    held = list(
        QuotaReservation.objects.filter(workspace=workspace, status="held").values_list("meter", "amount")
    )
    raise AssertionError(f"call not settled: events={UsageEvent.objects.count()}, held={held}")


@pytest.fixture
def slow_groq(caller, fake_upstream, live_asgi):
    user, plaintext, _client = caller
    plan_configure(weights={"groq": 100})
    global_key_set("groq")
    fake_upstream.delay_seconds = 0.5
    return user, plaintext, live_asgi, fake_upstream


def test_disconnect_while_the_upstream_works_still_settles_the_call(slow_groq):
    user, plaintext, base_url, upstream = slow_groq
    workspace = user.personal_workspace
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}

    _post_and_hang_up(base_url, plaintext, body, upstream=upstream)

    [event] = _settled(workspace)
    assert (event.status_code, event.total_tokens, event.is_estimated) == (200, 25, False)
    counters = dict(UsageCounter.objects.filter(workspace=workspace).values_list("meter", "used"))
    assert counters == {"llm_tokens": 25, "requests": 1}
    assert not UsageCounter.objects.filter(workspace=workspace, reserved__gt=0).exists()


def test_disconnect_before_the_first_streamed_byte_settles_with_the_provider_usage(slow_groq):
    user, plaintext, base_url, upstream = slow_groq
    workspace = user.personal_workspace
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "stream": True}

    _post_and_hang_up(base_url, plaintext, body, upstream=upstream)

    [event] = _settled(workspace)
    # The stream was read to its end by the relay's own task: the provider's usage chunk counts.
    assert (event.status_code, event.is_estimated, event.total_tokens) == (200, False, 15)
    used = UsageCounter.objects.get(workspace=workspace, meter="llm_tokens")
    assert (used.used, used.reserved) == (15, 0)


def test_a_stopping_worker_finishes_a_call_whose_client_left(caller, fake_upstream):
    """A deploy stops the worker while the provider still works on a call whose client left:
    the worker finishes and settles it before its event loop closes (ASGI lifespan shutdown)."""
    user, plaintext, _client = caller
    workspace = user.personal_workspace
    plan_configure(weights={"groq": 100})
    global_key_set("groq")
    fake_upstream.delay_seconds = 1.0
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}

    with uvicorn_served(lifespan="on") as (base_url, thread):
        _post_and_hang_up(base_url, plaintext, body, upstream=fake_upstream)
    # Leaving the block stopped the server at once, with the provider's answer still a second away.

    assert not thread.is_alive()
    [event] = UsageEvent.objects.filter(workspace=workspace)  # no waiting: on the books before the stop ended
    assert (event.status_code, event.total_tokens) == (200, 25)
    assert not QuotaReservation.objects.filter(workspace=workspace, status="held").exists()
    counters = dict(UsageCounter.objects.filter(workspace=workspace).values_list("meter", "used"))
    assert counters == {"llm_tokens": 25, "requests": 1}
