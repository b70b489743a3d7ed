"""The main pages in a real browser (Playwright + Debian chromium) at a laptop and a phone width:
axe-core (bundled by axe-playwright-python, run offline) finds no serious or critical violation,
nothing scrolls sideways, the console stays clean, the phone navigation fits, the keys and calls
tables show status, cost and the Rotate/Revoke buttons on a phone, and the low-balance dialog
takes focus, keeps it, closes on Escape and gives focus back."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe

from accounts.models import ApiKey
from accounts.tests.factories import StaffUserFactory, SuperuserFactory, UserFactory
from billing.models import PaymentTransaction
from billing.services import plan_catalog_seed
from credits.models import CreditPack
from credits.services import credit_grant
from dashboards.tests.factories import UsageEventFactory
from proxy.models import UsageEvent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-battery"
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
ANONYMOUS_PAGES = ("/", "/pricing/", "/docs/", "/accounts/login/", "/accounts/signup/")
SIGNED_IN_PAGES = (
    "/",
    "/dashboard/",
    "/activity/",
    "/keys/",
    "/billing/",
    "/billing/simulated-portal/",
    "/credits/",
    "/notifications/",
    "/webhooks/",
    "/accounts/profile/",
    "/pricing/",
    "/docs/",
)
# The operator's pages (Tollgate's admin): the index, the dashboard, a busy changelist.
STAFF_PAGES = ("/admin/", "/admin/dashboard/", "/admin/proxy/usageevent/", "/admin/accounts/workspace/")
AXE = Axe()


@pytest.fixture
def browser(chromium, settings, live_server):
    settings.DEBUG = True
    settings.SITE_URL = live_server.url
    settings.RATELIMIT_ENABLE = False
    settings.SIMULATED_CHECKOUT_ENABLED = True
    plan_catalog_seed()
    for code, credits, price in (("pack_100", 100, 1900), ("pack_500", 500, 7900)):
        CreditPack.objects.get_or_create(
            code=code, defaults={"name": f"Pack {credits}", "credits": credits, "price_minor": price}
        )
    return chromium


def _open(browser, live_server, viewport, color_scheme="light"):
    """A page that records console errors and any request leaving the test server."""
    context = browser.new_context(base_url=live_server.url, viewport=viewport, color_scheme=color_scheme)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.problems = []
    page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
    page.on(
        "request",
        lambda r: (
            not r.url.startswith((live_server.url, "data:", "blob:"))
            and page.problems.append(f"external request: {r.url}")
        ),
    )
    return page


def _login(page, email):
    page.goto("/accounts/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url("**/dashboard/")


def _serious(page) -> list[str]:
    results = AXE.run(page, options={"resultTypes": ["violations"]})
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes'][:3]]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def _check(page, path, shots) -> list[str]:
    page.goto(path)
    page.wait_for_load_state("load")
    width = page.viewport_size["width"]
    name = path.strip("/").replace("/", "-") or "home"
    page.screenshot(path=str(shots / f"{name}-{width}-{page.signed_in}.png"), full_page=True)
    found = [f"{path} @{width}: {line}" for line in _serious(page)]
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if overflow > 0:
        found.append(f"{path} @{width}: scrolls sideways by {overflow}px")
    found += [f"{path} @{width}: {p}" for p in page.problems]
    page.problems.clear()
    return found


def _customer():
    user = UserFactory(email="a11y@example.com", password=PASSWORD)
    workspace = user.personal_workspace
    ApiKey.objects.create(
        workspace=workspace, created_by=user, name="Production", prefix="sk_agentai_P001", key_hash="a" * 64
    )
    UsageEventFactory(workspace=workspace, status_code=200, credits_charged=3)
    UsageEventFactory(workspace=workspace, status_code=502, error_code="upstream_error")
    PaymentTransaction.objects.create(  # a row in the Billing page's payments table
        workspace=workspace,
        gateway="stripe",
        kind="credit_pack",
        reference="cs_a11y_pack",
        amount_minor=1999,
        currency="eur",
        status="paid",
        receipt_url="https://pay.stripe.com/receipts/payment/a11y",
    )
    return user


@pytest.mark.parametrize("color_scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_main_pages_have_no_serious_axe_violation_overflow_or_console_error(
    browser, live_server, viewport, color_scheme, tmp_path_factory
):
    user = _customer()
    workspace = user.personal_workspace
    call = UsageEvent.objects.filter(workspace=workspace).first()
    per_workspace = (
        f"/workspaces/{workspace.pk}/members/",
        f"/workspaces/{workspace.pk}/audit/",
        f"/activity/{call.call_id}/",
    )
    shots = tmp_path_factory.getbasetemp() / "screenshots" / color_scheme  # kept as CI artefacts
    shots.mkdir(parents=True, exist_ok=True)
    page = _open(browser, live_server, viewport, color_scheme)
    page.signed_in = "anonymous"
    found = []
    for path in ANONYMOUS_PAGES:
        found += _check(page, path, shots)
    _login(page, "a11y@example.com")
    page.signed_in = "signed-in"
    for path in SIGNED_IN_PAGES + per_workspace:
        found += _check(page, path, shots)
    page.context.clear_cookies()
    SuperuserFactory(email="operator@example.com", password=PASSWORD)
    page.goto("/admin/login/")
    page.fill("input[name=username]", "operator@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.locator("input[type=submit]").click()
    page.wait_for_url("**/admin/")
    page.signed_in = "staff"
    for path in (*STAFF_PAGES, f"/admin/customers/{workspace.pk}/"):
        found += _check(page, path, shots)
    assert not found, "\n".join(found)


def test_the_phone_navigation_is_one_line_and_opens_from_the_keyboard(browser, live_server):
    _customer()
    page = _open(browser, live_server, PHONE)
    _login(page, "a11y@example.com")
    page.keyboard.press("Tab")  # the first stop is the skip link, which lands on the content
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    header = page.locator("header.topbar").bounding_box()
    assert header["height"] < 80, f"the navigation wraps ({header['height']}px high)"
    menu = page.get_by_role("button", name="Menu")
    assert menu.is_visible()
    assert not page.get_by_role("link", name="Docs").is_visible()
    menu.focus()
    page.keyboard.press("Enter")
    assert page.get_by_role("link", name="Docs").is_visible()
    assert menu.get_attribute("aria-expanded") == "true"
    page.keyboard.press("Escape")
    assert not page.get_by_role("link", name="Docs").is_visible()
    assert page.evaluate("document.activeElement.getAttribute('aria-controls')") == menu.get_attribute(
        "aria-controls"
    )


def test_on_a_phone_the_keys_and_calls_tables_show_status_cost_and_actions(browser, live_server):
    _customer()
    page = _open(browser, live_server, PHONE)
    _login(page, "a11y@example.com")
    page.goto("/keys/")
    for name in ("Rotate", "Revoke"):
        button = page.get_by_role("button", name=name)
        assert button.is_visible()
        box = button.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"{name} is off-screen"
    page.goto("/dashboard/")
    calls = page.locator(".dash-table--calls tbody tr")
    failed = calls.filter(has_text="502")
    for label in ("Status", "Cost"):
        cell = failed.locator(f"td[data-label='{label}']")
        box = cell.bounding_box()
        assert cell.is_visible() and box["x"] + box["width"] <= PHONE["width"], f"{label} is off-screen"
    assert calls.filter(has_text="3 cr").locator("td[data-label='Cost']").is_visible()


def test_the_low_balance_dialog_traps_focus_closes_on_escape_and_returns_focus(browser, live_server):
    user = _customer()
    credit_grant(workspace=user.personal_workspace, amount=5, admin_user=StaffUserFactory(), reason="test")
    page = _open(browser, live_server, LAPTOP)
    _login(page, "a11y@example.com")
    dialog = page.locator("dialog#credits-low-modal")
    dialog.wait_for(state="visible")
    assert page.evaluate("document.activeElement.closest('#credits-low-modal') !== null")
    assert _serious(page) == []
    for _ in range(8):  # more presses than the dialog has controls: focus cycles inside
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.closest('#credits-low-modal') !== null")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.closest('#credits-low-modal') !== null")

    page.keyboard.press("Escape")

    dialog.wait_for(state="hidden")
    assert page.evaluate("document.activeElement !== document.body && document.activeElement !== null")
    # Focus goes back to the opener on the dialog's close event, a task after it hides.
    page.wait_for_function("document.activeElement.closest('#credits-low-modal') === null")
    page.reload()  # Escape dismissed it for the session, as "Not now" does
    assert not page.locator("dialog#credits-low-modal").is_visible()
    assert page.problems == []
