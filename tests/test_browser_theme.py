"""Real-browser checks of the page chrome (Playwright + Debian chromium): the theme toggle
switches to dark, is remembered across pages with no light first paint, and a key-creation
button shows progress while its request is on its way."""

from __future__ import annotations

import pytest

from accounts.models import ApiKey
from accounts.tests.factories import UserFactory
from billing.services import plan_catalog_seed

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-battery"
# What <html> says at the first script that runs after <head>: the theme before first paint.
FIRST_PAINT_THEME = """
document.addEventListener("readystatechange", () => {
  const theme = document.documentElement.getAttribute("data-theme");
  if (!window.__firstTheme) window.__firstTheme = theme || "none";
}, {once: true});
"""


@pytest.fixture
def page(chromium, settings, live_server):
    settings.DEBUG = True
    settings.RATELIMIT_ENABLE = False
    plan_catalog_seed()
    context = chromium.new_context(base_url=live_server.url, color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def _background(page) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


def test_the_theme_toggle_switches_to_dark_and_is_remembered(page):
    page.goto("/pricing/")
    light = _background(page)
    toggle = page.locator("[data-theme-toggle]")
    assert toggle.get_attribute("aria-pressed") == "false"

    toggle.click()

    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert toggle.get_attribute("aria-pressed") == "true"
    assert _background(page) != light
    page.add_init_script(FIRST_PAINT_THEME)
    page.goto("/docs/")
    assert page.evaluate("window.__firstTheme") == "dark"  # set in <head>, before the body paints
    assert _background(page) != light
    page.locator("[data-theme-toggle]").click()
    assert _background(page) == light


def test_the_system_dark_preference_applies_without_a_choice(page):
    page.emulate_media(color_scheme="dark")
    page.goto("/pricing/")
    assert page.evaluate("document.documentElement.dataset.theme") is None
    assert page.locator("[data-theme-toggle]").get_attribute("aria-pressed") == "true"
    assert _background(page) == "rgb(15, 20, 32)"


def test_creating_a_key_shows_progress_and_sends_once(page):
    user = UserFactory(email="keys@example.com", password=PASSWORD)
    page.goto("/accounts/login/")
    page.fill("input[name=username]", "keys@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url("**/dashboard/")
    page.goto("/keys/")
    held = []
    page.route("**/dashboard/keys/", lambda route: held.append(route))  # hold the POST
    # The answer loads in a frame, so this page stays inspectable while the request is held.
    page.evaluate(
        """() => {
          const sink = document.createElement("iframe");
          sink.name = "sink";
          document.body.append(sink);
          document.querySelector("#api-keys form[data-progress]").target = "sink";
        }"""
    )

    page.locator("#api-keys button", has_text="Create a key").click()
    working = page.locator("#api-keys button.is-working")
    working.wait_for()

    assert "Working" in working.inner_text() and working.is_disabled()
    page.evaluate("document.querySelector('#api-keys form[data-progress]').requestSubmit()")  # a second try
    page.wait_for_timeout(300)
    assert len(held) == 1
    held[0].continue_()
    for _ in range(100):  # the held request reaches the server: one key, not two
        if ApiKey.objects.filter(created_by=user).exists():
            break
        page.wait_for_timeout(100)
    page.wait_for_timeout(300)
    assert ApiKey.objects.filter(workspace=user.personal_workspace, created_by=user).count() == 1
