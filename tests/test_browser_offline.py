"""Real-browser checks of "nothing breaks offline" (Playwright + Debian chromium): the API guide
never scrolls sideways at 1366 px or 390 px, Swagger UI renders from our own static files with
no request to another host, and a new key is shown once in a modal dialog with Copy."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings

from accounts.models import ApiKey
from accounts.tests.factories import UserFactory
from billing.services import plan_catalog_seed

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-battery"
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def browser(chromium):
    return chromium


@pytest.fixture
def page(browser, settings, live_server):
    settings.DEBUG = True
    settings.SITE_URL = live_server.url
    settings.RATELIMIT_ENABLE = False
    plan_catalog_seed()  # transactional tests flush the migration's rows; the dashboard needs them
    context = browser.new_context(viewport=DESKTOP, base_url=live_server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    external: list[str] = []
    host = urlsplit(live_server.url).netloc

    def record(request):
        if urlsplit(request.url).netloc not in (host, "") and not request.url.startswith(("data:", "blob:")):
            external.append(request.url)

    def blocked(request):
        # The page's own Content-Security-Policy stopped it in the browser: nothing left the machine.
        if request.failure in ("csp", "net::ERR_BLOCKED_BY_CSP") and request.url in external:
            external.remove(request.url)

    page.on("request", record)
    page.on("requestfailed", blocked)
    page.external_requests = external
    yield page
    context.close()


def _login(page, email: str) -> None:
    UserFactory(email=email, password=PASSWORD)
    page.goto("/accounts/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url("**/dashboard/")


def _sideways(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def test_api_guide_never_scrolls_sideways(page):
    _login(page, "reader@example.com")
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        page.goto("/docs/")
        assert _sideways(page) <= 1, f"/docs/ scrolls sideways at {viewport['width']} px"
        # Long code blocks scroll inside themselves instead.
        assert page.evaluate(
            "[...document.querySelectorAll('.docs-body pre')].some(p => p.scrollWidth > p.clientWidth)"
        )
    assert page.external_requests == []


def test_swagger_ui_renders_offline(page):
    page.goto("/api/docs/")
    page.locator(".swagger-ui .info .title").wait_for()
    assert "Tollgate API" in page.locator(".swagger-ui .info .title").inner_text()
    page.goto("/api/redoc/")
    page.locator("#redoc-container h1, redoc h1").first.wait_for()
    page.wait_for_load_state("networkidle")
    assert page.external_requests == []


def test_new_key_is_shown_once_in_a_dialog_with_copy(page):
    _login(page, "keys@example.com")
    page.goto("/keys/")
    page.fill("#api-keys input[name=name]", "laptop")
    page.locator("#api-keys button", has_text="Create a key").click()
    dialog = page.locator("dialog#new-key-dialog")
    dialog.wait_for()
    assert page.evaluate("document.querySelector('dialog#new-key-dialog').matches(':modal')")
    key = page.locator("#new-key-value").inner_text().strip()
    assert key.startswith(django_settings.PROXY_KEY_PREFIX)
    assert "sk_" not in page.url  # the secret is never in the URL
    page.locator("button[data-copy-target=new-key-value]").click()
    page.locator("button[data-copy-target=new-key-value]", has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == key

    page.keyboard.press("Escape")
    assert not dialog.is_visible()
    page.reload()  # Post/Redirect/Get: a reload neither shows the key again nor makes another
    assert page.locator("dialog#new-key-dialog").count() == 0
    assert key not in page.content()
    assert ApiKey.objects.filter(created_by__email="keys@example.com").count() == 1
