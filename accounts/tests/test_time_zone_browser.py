"""Times in the browser's zone, in a real browser: Chromium set to Asia/Tokyo reports it, the
page script stores it in the ``tz`` cookie, and the next page prints times in Tokyo time."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import time_machine

from accounts.tests.factories import UserFactory, api_key_for
from billing.services import plan_catalog_seed

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-battery"
# 12:00 UTC is 21:00 in Tokyo (JST, UTC+9, no summer time).
CREATED_AT = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def browser(chromium, settings, live_server):
    settings.RATELIMIT_ENABLE = False
    plan_catalog_seed()  # the dashboard shows the plan (transactional tests flush the seed)
    return chromium


def test_a_browser_in_tokyo_sees_tokyo_time(browser, live_server):
    user = UserFactory(email="tokyo@example.com", password=PASSWORD)
    with time_machine.travel(CREATED_AT, tick=False):
        api_key_for(user, name="made at noon UTC")
    context = browser.new_context(base_url=live_server.url, timezone_id="Asia/Tokyo")
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto("/accounts/login/")
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url(re.compile(r".*/dashboard/$"))
    page.reload()  # the first page a browser ever sees may still be in UTC

    assert {c["name"]: c["value"] for c in context.cookies()}.get("tz") == "Asia/Tokyo"
    assert "times in Asia/Tokyo" in page.locator("#dash-workspace").inner_text()
    page.goto("/keys/")
    created = page.locator("#api-keys td[data-label=Created] time")
    assert created.inner_text() == "1 Jul 2025, 21:00"
    assert created.get_attribute("datetime") == "2025-07-01T12:00:00Z"
    assert "(Asia/Tokyo)" in created.get_attribute("title")

    # A zone chosen on the profile wins over the browser's.
    page.goto("/accounts/profile/")
    page.get_by_role("combobox", name="Time zone").select_option("Europe/Paris")
    page.get_by_role("button", name="Save time zone").click()
    page.wait_for_url(re.compile(r".*/accounts/profile/$"))
    assert page.locator("[data-current-time-zone]").inner_text() == "Europe/Paris"
    page.goto("/keys/")
    assert page.locator("#api-keys td[data-label=Created] time").inner_text() == "1 Jul 2025, 14:00"
    assert not errors
    context.close()
