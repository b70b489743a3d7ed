"""Nothing breaks offline: no page loads a script, stylesheet, image or frame from another host
(Swagger UI and ReDoc come from drf-spectacular-sidecar, served from our own static files), and
every local asset a page names exists."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders

from .conftest import session_client

LOADING_TAGS = {"script": "src", "link": "href", "img": "src", "iframe": "src", "source": "src"}

PUBLIC_PAGES = [
    "/",
    "/docs/",
    "/api/docs/",
    "/api/redoc/",
    "/pricing/",
    "/accounts/login/",
    "/accounts/signup/",
    "/accounts/password-reset/",
]
SIGNED_IN_PAGES = [
    "/dashboard/",
    "/keys/",
    "/billing/",
    "/credits/",
    "/accounts/profile/",
    "/docs/",
    "/pricing/",
]


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attribute = LOADING_TAGS.get(tag)
        if attribute is None:
            return
        values = dict(attrs)
        if values.get(attribute):
            self.urls.append(values[attribute])


def _assets(html: str) -> list[str]:
    parser = _Assets()
    parser.feed(html)
    return parser.urls


def _check(url: str, response) -> None:
    assert response.status_code == 200, (url, response.status_code)
    urls = _assets(response.content.decode())
    assert urls, f"{url} loads no asset at all: the parser is not seeing the page"
    for asset in urls:
        parts = urlsplit(asset)
        assert not parts.netloc or parts.netloc == "testserver", f"{url} loads {asset} from another host"
        if parts.path.startswith(settings.STATIC_URL):
            name = parts.path[len(settings.STATIC_URL) :]
            assert finders.find(name), f"{url} names a static file that does not exist: {asset}"


def test_the_parser_sees_external_assets():
    html = (
        '<script src="https://cdn.example/x.js"></script><link rel="stylesheet" href="//cdn.example/a.css">'
        '<link rel="preconnect" href="https://fonts.example"><a href="https://docs.example/">a link</a>'
    )
    assert [urlsplit(u).netloc for u in _assets(html)] == ["cdn.example", "cdn.example", "fonts.example"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", PUBLIC_PAGES)
def test_public_pages_load_nothing_from_another_host(client, catalog, url):
    _check(url, client.get(url))


@pytest.mark.django_db
@pytest.mark.parametrize("url", SIGNED_IN_PAGES)
def test_signed_in_pages_load_nothing_from_another_host(user_a, catalog, url):
    _check(url, session_client(user_a).get(url))


@pytest.mark.django_db
def test_swagger_ui_and_redoc_come_from_the_sidecar(client):
    swagger = client.get("/api/docs/").content.decode()
    redoc = client.get("/api/redoc/").content.decode()
    assert f"{settings.STATIC_URL}drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in swagger
    assert f"{settings.STATIC_URL}drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js" in redoc


@pytest.mark.django_db
def test_swagger_ui_sends_the_schema_to_no_online_validator(client):
    # Swagger UI otherwise shows a badge image fetched from validator.swagger.io.
    assert '"validatorUrl": null' in client.get("/api/docs/").content.decode()


@pytest.mark.django_db
def test_simulated_billing_pages_load_nothing_from_another_host(user_a, catalog, settings):
    settings.DEBUG = True
    settings.STRIPE_SECRET_KEY = ""
    settings.SIMULATED_CHECKOUT_ENABLED = True
    _check("/billing/simulated-portal/", session_client(user_a).get("/billing/simulated-portal/"))
