"""The credits page with every new part filled in (the "what a credit buys" table, prices per
credit, a purchase with its receipt link) in a real browser at a laptop and a phone width, in
light and dark: no serious axe violation, nothing scrolls sideways, a clean console."""

from __future__ import annotations

import pytest

from credits.models import EndpointCost
from credits.tests.factories import EndpointCostFactory, UserFactory, seed_catalogue
from tests.test_browser_accessibility import LAPTOP, PASSWORD, PHONE, _check, _login, _open, browser  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("color_scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_the_credits_page_reads_well_at_both_widths(
    browser,  # noqa: F811 (the fixture imported above)
    live_server,
    viewport,
    color_scheme,
    tmp_path_factory,
):
    seed_catalogue()
    EndpointCostFactory(
        endpoint="/api/proxy/v1/chat/completions",
        description="Routed chat, per request",
        per_call=1,
        unit=EndpointCost.Unit.REQUESTS,
    )
    EndpointCostFactory(
        endpoint="/api/proxy/mixed", per_call=1, per_1000_units=2, unit=EndpointCost.Unit.TOKENS
    )
    UserFactory(email="credits-page@example.com", password=PASSWORD)
    page = _open(browser, live_server, viewport, color_scheme)
    page.signed_in = "signed-in"
    _login(page, "credits-page@example.com")
    # A purchase through the simulated checkout, so the history holds a receipt link.
    page.goto("/credits/")
    page.locator('form[action="/credits/buy/pack_100/"] button[type=submit]').first.click()
    page.locator("button[name=action][value=pay]").click()
    page.wait_for_url("**/credits/?purchase=success")
    page.reload()
    assert page.locator("a[data-receipt=stripe]").count() == 1
    assert page.locator("table.credit-buys tbody tr").count() >= 6
    shots = tmp_path_factory.getbasetemp() / "screenshots" / f"credits-{color_scheme}"
    shots.mkdir(parents=True, exist_ok=True)

    found = _check(page, "/credits/", shots)

    assert not found, "\n".join(found)
