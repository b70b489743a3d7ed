"""The suspended-workspace banner in a real browser at a phone width (390 px): shown above the
page's content, inside the screen, announced as a status, in French for a French browser, with
no serious axe-core violation (light and dark)."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe

from accounts.services.suspension import workspace_suspend
from accounts.tests.factories import SuperuserFactory, UserFactory
from billing.services import plan_catalog_seed

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-battery"
PHONE = {"width": 390, "height": 844}
BANNER_FR = "Cet espace de travail est suspendu : ses clés d’API sont refusées. Contactez le support."


@pytest.fixture
def browser(chromium, settings, live_server):
    settings.DEBUG = True
    settings.SITE_URL = live_server.url
    settings.RATELIMIT_ENABLE = False
    plan_catalog_seed()
    return chromium


@pytest.mark.parametrize("color_scheme", ["light", "dark"])
def test_the_banner_is_visible_on_a_phone_and_accessible(browser, live_server, color_scheme):
    user = UserFactory(email="suspended@example.com", password=PASSWORD)
    workspace_suspend(
        workspace=user.personal_workspace, reason="internal: card testing", actor=SuperuserFactory()
    )
    context = browser.new_context(
        base_url=live_server.url, viewport=PHONE, color_scheme=color_scheme, locale="fr-FR"
    )
    context.set_extra_http_headers({"Accept-Language": "fr-FR,fr;q=0.9"})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto("/accounts/login/")
    page.fill("input[name=username]", "suspended@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url("**/dashboard/")

    banner = page.get_by_role("status").filter(has_text="suspendu")
    assert banner.is_visible() and banner.inner_text().strip() == BANNER_FR
    box = banner.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert box["y"] < page.locator("main h1").bounding_box()["y"]  # before the page's content
    assert "card testing" not in page.content()
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    violations = Axe().run(page, options={"resultTypes": ["violations"]}).response["violations"]
    serious = [v["id"] for v in violations if v["impact"] in ("serious", "critical")]
    assert not serious, serious
    context.close()
