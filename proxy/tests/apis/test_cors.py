"""CORS on /api/proxy/ for operator-listed origins only (PROXY_CORS_ALLOWED_ORIGINS)."""

import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.test import Client

pytestmark = pytest.mark.django_db

APP = "https://app.example"
CHAT = "/api/proxy/v1/chat/completions"


@pytest.fixture
def cors(settings):
    settings.CORS_ALLOWED_ORIGINS = [APP]
    settings.MIDDLEWARE = [
        settings.MIDDLEWARE[0],
        "corsheaders.middleware.CorsMiddleware",
        *settings.MIDDLEWARE[1:],
    ]
    return Client()


def test_a_listed_origin_passes_the_preflight_with_the_sdk_headers(cors):
    response = cors.options(
        CHAT,
        HTTP_ORIGIN=APP,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type,x-stainless-os,anthropic-version",
    )

    assert response.status_code == 200
    assert response["access-control-allow-origin"] == APP
    allowed = response["access-control-allow-headers"]
    assert {"authorization", "x-stainless-os", "anthropic-version"} <= set(allowed.split(", "))


def test_an_answer_to_a_listed_origin_exposes_the_retry_headers(cors, caller):
    _user, plaintext, _client = caller

    response = cors.post(
        CHAT, "{}", content_type="application/json", HTTP_ORIGIN=APP, HTTP_AUTHORIZATION=f"Bearer {plaintext}"
    )

    assert response["access-control-allow-origin"] == APP
    assert "x-should-retry" in response["access-control-expose-headers"]


def test_other_origins_and_other_urls_get_no_cors_headers(cors):
    elsewhere = cors.options(
        CHAT, HTTP_ORIGIN="https://evil.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    keys = cors.get("/api/keys", HTTP_ORIGIN=APP)

    assert "access-control-allow-origin" not in elsewhere
    assert "access-control-allow-origin" not in keys


def test_off_by_default_and_on_when_origins_are_listed():
    assert "corsheaders.middleware.CorsMiddleware" not in django_settings.MIDDLEWARE
    code = "import config.settings as s; print(s.MIDDLEWARE.index('corsheaders.middleware.CorsMiddleware'))"
    env = {**os.environ, "PROXY_CORS_ALLOWED_ORIGINS": APP}

    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "1"  # before the proxy's fast path
