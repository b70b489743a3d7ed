"""The middleware stack under ASGI: fully async, and the proxy API on its short path."""

import pytest
from asgiref.sync import async_to_sync, iscoroutinefunction
from django.conf import settings as django_settings
from django.core.handlers.asgi import ASGIHandler
from django.core.management import call_command
from django.test import AsyncClient


def test_the_asgi_middleware_chain_is_async_end_to_end():
    """One sync-only middleware would push every request through a thread (and the async
    proxy back through async_to_sync); this fails the day one is added."""
    assert iscoroutinefunction(ASGIHandler()._middleware_chain)


@pytest.mark.django_db
def test_proxy_urls_skip_the_page_middleware_but_keep_request_id_and_nosniff():
    response = async_to_sync(AsyncClient().post)(
        "/api/proxy/v1/chat/completions",
        data={"messages": []},
        content_type="application/json",
        headers={"X-Request-ID": "trace-123"},
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert response["X-Request-ID"] == "trace-123"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "X-Frame-Options" not in response  # the clickjacking middleware did not run
    assert not response.cookies


@pytest.mark.django_db
def test_other_urls_take_the_full_stack():
    response = async_to_sync(AsyncClient().get)("/health")

    assert response.status_code in (200, 503)
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Request-ID"]


def test_unknown_proxy_url_falls_back_to_the_json_404():
    response = async_to_sync(AsyncClient().get)("/api/proxy/nope")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def _get_body(path):
    response = await AsyncClient().get(path)
    body = b"".join([chunk async for chunk in response.streaming_content])
    return response, body


@pytest.mark.parametrize(
    ("debug", "cache_control"),
    [(False, "max-age=60, public"), (True, "max-age=0, public")],
    ids=["production", "debug"],
)
def test_static_files_are_served_by_the_async_chain_with_their_cache_header(
    debug, cache_control, settings, tmp_path
):
    """Production serves what ``collectstatic`` put in STATIC_ROOT (the Dockerfile runs it);
    ``make run`` (DEBUG) serves the source folders, never cached."""
    settings.DEBUG = debug
    settings.STATIC_ROOT = tmp_path
    if not debug:
        call_command("collectstatic", "--noinput", verbosity=0)
    source = (django_settings.BASE_DIR / "static" / "css" / "app.css").read_bytes()

    response, body = async_to_sync(_get_body)("/static/css/app.css")

    assert response.status_code == 200
    assert body == source
    assert response["Content-Type"].startswith("text/css")
    assert response["Cache-Control"] == cache_control


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_a_missing_static_file_is_a_404_not_an_error_page(debug, settings, tmp_path):
    settings.DEBUG = debug
    settings.STATIC_ROOT = tmp_path

    response = async_to_sync(AsyncClient().get)("/static/css/no-such-file.css")

    assert response.status_code == 404
