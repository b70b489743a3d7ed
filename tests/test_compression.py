"""gzip for pages (``core.compression.PageGZipMiddleware``), never for the proxy API, streams
or no-store pages."""

import gzip

import pytest
from asgiref.sync import async_to_sync
from django.http import HttpResponse, StreamingHttpResponse
from django.test import AsyncClient, Client, RequestFactory

from core.compression import PageGZipMiddleware

from .conftest import bearer_client

GZIP = {"Accept-Encoding": "gzip, deflate, br"}


@pytest.mark.django_db
@pytest.mark.parametrize("client_class", [Client, AsyncClient], ids=["wsgi", "asgi"])
def test_a_page_is_gzipped_when_the_browser_accepts_it(client_class):
    def get(**kwargs):
        if client_class is AsyncClient:
            return async_to_sync(AsyncClient().get)("/pricing/", **kwargs)
        return Client().get("/pricing/", **kwargs)

    plain = get()
    packed = get(headers=GZIP)

    assert plain.status_code == packed.status_code == 200
    assert "Content-Encoding" not in plain
    assert packed["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in packed["Vary"]
    assert b"Compare plans" in gzip.decompress(packed.content)
    assert len(packed.content) < len(plain.content) / 2


@pytest.mark.django_db(transaction=True)  # the proxy's fast lane reads keys on its own connection
def test_the_proxy_answer_is_not_gzipped(catalog, user_a):
    """The proxy's JSON, on its fast path (ASGI, and WSGI: the chain is async there too)."""
    plaintext = bearer_client(user_a).plaintext
    headers = {**GZIP, "Authorization": f"Bearer {plaintext}"}

    fast = async_to_sync(AsyncClient().get)("/api/proxy/v1/models", headers=headers)
    full = Client().get("/api/proxy/v1/models", headers=headers)

    for response in (fast, full):
        assert response.status_code == 200
        assert len(gzip.compress(response.content)) < len(response.content) - 100  # gzip would have paid
        assert "Content-Encoding" not in response
        assert response.json()["data"]


def _through_middleware(response, path="/somewhere/"):
    request = RequestFactory().get(path, headers=GZIP)
    return PageGZipMiddleware(lambda request: response)(request)


def test_streams_are_not_gzipped():
    """Server-sent events: gzip would hold chunks back in its buffer."""
    stream = StreamingHttpResponse(
        (b"data: %d\n\n" % n for n in range(100)), content_type="text/event-stream"
    )

    response = _through_middleware(stream)

    assert "Content-Encoding" not in response
    assert b"".join(response.streaming_content).startswith(b"data: 0\n\n")


def test_no_store_pages_are_not_gzipped_and_others_are():
    body = "<p>" + "x" * 500 + "</p>"
    secret_page = HttpResponse(body)
    secret_page["Cache-Control"] = "max-age=0, no-cache, no-store, must-revalidate, private"

    assert "Content-Encoding" not in _through_middleware(secret_page)
    assert _through_middleware(HttpResponse(body))["Content-Encoding"] == "gzip"


def test_a_proxy_url_that_takes_the_full_stack_is_not_gzipped_either():
    """A proxy route the fast path hands on (not an async view) still reaches this middleware."""
    body = '{"data": [' + ", ".join(f'{{"id": "model-{n}"}}' for n in range(50)) + "]}"

    response = _through_middleware(
        HttpResponse(body, content_type="application/json"), path="/api/proxy/v1/models"
    )

    assert "Content-Encoding" not in response and response.content == body.encode()


@pytest.mark.django_db
def test_api_json_is_never_gzipped(user_a):
    """BREACH: an API answer can carry a secret shown once (a new key) beside the caller's input."""
    client = bearer_client(user_a)
    for n in range(5):  # a body well past gzip's 200-byte floor
        client.post("/api/keys", {"name": f"server-{n}"}, format="json")
    response = client.get("/api/keys", headers=GZIP)

    assert response.status_code == 200 and len(response.content) > 500
    assert "Content-Encoding" not in response
    assert response.json() is not None
