"""Real-browser journeys: Playwright driving Debian's chromium against the live test server.

Screenshots of each page land in ``test-artifacts/screenshots/`` (laptop 1280 px and phone
390 px wide). Stripe is only involved in the organization link, stubbed at the HTTP boundary
with ``responses`` (the live server runs in this process); payments use the simulated checkout.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses
from django.conf import settings as django_settings

from billing.models import Plan
from billing.services import plan_catalog_seed
from credits.models import CreditPack
from credits.services import credit_grant
from dashboards.tests.factories import OrganizationFactory, StaffFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "screenshots"
PASSWORD = "correct-horse-battery"
LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def browser(chromium):
    SHOTS.mkdir(parents=True, exist_ok=True)
    return chromium


@pytest.fixture
def site(settings, live_server):
    """The embedded defaults a newcomer runs with: DEBUG, simulated checkout, no Stripe key."""
    settings.DEBUG = True
    settings.SITE_URL = live_server.url
    settings.STRIPE_SECRET_KEY = ""
    settings.SIMULATED_CHECKOUT_ENABLED = True
    settings.STRIPE_WEBHOOK_SECRET = "whsec_dashboards_browser_tests"
    settings.CHECKOUT_REDIRECT_HOSTS = ["localhost", "127.0.0.1"]
    settings.RATELIMIT_ENABLE = False
    plan_catalog_seed()
    for code, credits, price, order in (("pack_100", 100, 1900, 10), ("pack_500", 500, 7900, 20)):
        CreditPack.objects.get_or_create(
            code=code,
            defaults={
                "name": f"Pack {credits}",
                "credits": credits,
                "price_minor": price,
                "display_order": order,
            },
        )
    return live_server


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport=LAPTOP, base_url=site.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def shoot(page, name: str) -> None:
    """Full-page screenshots at laptop and phone widths; fails if the page scrolls sideways."""
    for label, viewport in (("laptop", LAPTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        culprits = page.evaluate(
            "[...document.querySelectorAll('body *')]"
            ".filter(e => e.getBoundingClientRect().right > window.innerWidth + 1"
            " && !(e.parentElement && e.parentElement.closest('.table-wrap')))"
            ".slice(0, 5).map(e => e.outerHTML.slice(0, 120))"
        )
        assert overflow <= 1, f"{name} scrolls sideways by {overflow}px at {label} width: {culprits}"
    page.set_viewport_size(LAPTOP)


def login(page, email: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit], main form input[type=submit]").first.click()
    page.wait_for_url("**/dashboard/")


def test_signup_dashboard_create_key_and_copy(page):
    page.goto("/accounts/signup/")
    page.fill("input[name=email]", "newcomer@example.com")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/dashboard/")
    assert page.locator("#plan-card").get_attribute("data-plan") == "free"
    assert page.locator("#quotas [data-meter]").count() >= 1
    shoot(page, "dashboard-new-user")

    page.get_by_role("link", name="Create your first key").click()
    page.wait_for_url("**/keys/")
    page.fill("#api-keys input[name=name]", "laptop")
    page.locator("#api-keys button", has_text="Create a key").click()
    key = page.locator("#new-key-value").inner_text().strip()
    assert key.startswith(django_settings.PROXY_KEY_PREFIX) and len(key) > 40
    page.locator("button[data-copy-target=new-key-value]").click()
    page.locator("button[data-copy-target=new-key-value]", has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == key
    shoot(page, "key-created")

    # Back on the keys page the key is listed by prefix only; the overview no longer offers a start.
    page.goto("/keys/")
    row = page.locator("#api-keys tbody tr").first
    assert "laptop" in row.inner_text() and key not in page.content()
    page.get_by_role("link", name="Overview").click()
    page.wait_for_url("**/dashboard/")
    assert page.locator("#get-started").count() == 0


def test_pricing_simulated_checkout_shows_plan_and_quota_bars(page):
    UserFactory(email="buyer@example.com")
    paid = Plan.objects.filter(is_public=True, price_minor__gt=0).order_by("sort_order", "price_minor")[0]
    login(page, "buyer@example.com")
    page.goto("/pricing/")
    shoot(page, "pricing")
    page.locator(f'[data-ladder="eur"] [data-plan="{paid.code}"]').get_by_role(
        "button", name=f"Choose {paid.name}"
    ).click()
    page.wait_for_url("**/billing/simulated-checkout/**")
    shoot(page, "simulated-checkout")
    page.locator("button[value=pay]").click()
    page.wait_for_url("**/billing/success/**")
    page.goto("/dashboard/")
    assert page.locator("#plan-card").get_attribute("data-plan") == paid.code
    assert page.locator("[data-plan-status]").inner_text().strip().lower() == "active"
    bars = page.locator("#quotas [data-meter] .progress")
    assert bars.count() >= 1
    shoot(page, "dashboard-paid-plan")
    page.get_by_role("link", name="Billing", exact=True).first.click()
    page.wait_for_url("**/billing/")
    assert page.locator("#plan-card button", has_text="Manage billing").is_visible()
    assert page.locator("#payments tbody tr[data-status=paid]").count() == 1
    shoot(page, "billing-paid-plan")


def test_pay_a_plan_and_a_pack_in_dzd_with_chargily(page, settings):
    """The Chargily buttons on the pricing and credits pages, through the simulated Chargily
    page and the real webhook code, to the plan card and the credits badge."""
    settings.CHARGILY_API_KEY = ""  # DEBUG + no key: Chargily's simulated page
    CreditPack.objects.filter(code="pack_500").update(price_dzd_minor=250_000)
    UserFactory(email="dzd@example.com")
    login(page, "dzd@example.com")

    page.goto("/pricing/")
    student = page.locator('[data-ladder="dzd"] [data-plan="student"]')
    assert "1,590.00 DZD" in student.inner_text()
    student.get_by_role("button", name="Pay with Chargily (DZD)").click()
    page.wait_for_url("**/payment/chargily/simulated-checkout/**")
    shoot(page, "chargily-simulated-checkout")
    page.get_by_role("button", name="Pay 1590 DZD").click()
    page.wait_for_url("**/billing/success/**")
    page.goto("/dashboard/")
    assert page.locator("#plan-card").get_attribute("data-plan") == "student"

    page.goto("/credits/")
    shoot(page, "credits-dzd")
    pack = page.locator('form[action="/credits/buy/pack_500/"]')
    assert "2,500 DZD" in pack.inner_text()
    pack.get_by_role("button", name="Pay with Chargily (DZD)").click()
    page.wait_for_url("**/payment/chargily/simulated-checkout/**")
    page.get_by_role("button", name="Pay 2500 DZD").click()
    page.wait_for_url("**/credits/?purchase=success")
    assert page.locator("[data-credits-balance]").first.inner_text().strip() == "500"


def test_buy_credits_updates_the_badge(page):
    UserFactory(email="credits@example.com")
    login(page, "credits@example.com")
    assert page.locator("[data-credits-balance]").inner_text() == "0"
    page.locator("[data-credits-badge] a.button", has_text="Buy").click()
    page.wait_for_url("**/credits/")
    shoot(page, "credits")
    page.locator("form[action*='pack_100'] button").click()
    page.wait_for_url("**/billing/simulated-checkout/**")
    page.locator("button[value=pay]").click()
    page.wait_for_url("**/credits/?purchase=success")
    assert page.locator("[data-credits-balance]").inner_text() == "100"
    page.goto("/dashboard/")
    assert page.locator("[data-credits-available]").inner_text() == "100"


def test_low_balance_opens_the_upsell_modal(page):
    user = UserFactory(email="low@example.com")
    credit_grant(workspace=user.personal_workspace, amount=5, admin_user=StaffFactory(), reason="test")
    login(page, "low@example.com")
    modal = page.locator("#credits-low-modal")
    modal.wait_for(state="visible")
    assert "Only 5 credits left" in modal.inner_text()
    assert modal.locator("form[action*='/credits/buy/'] button").count() == 2
    shoot(page, "low-balance-modal")
    modal.locator("button", has_text="Not now").click()
    modal.wait_for(state="hidden")


def test_staff_links_a_pending_organization_from_the_operator_dashboard(page, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_dashboards_browser"
    settings.STRIPE_API_BASE = ""
    settings.STRIPE_PRICE_VAULTAI_SELF_HOSTED = "price_selfhosted"
    settings.STRIPE_PRICE_VAULTAI_MANAGED_CLOUD = "price_managed"
    StaffFactory(email="operator@example.com")
    organization = OrganizationFactory(name="Acme Corp", instance_url="acme.vaultai.eu", latest_user_count=45)
    OrganizationFactory(name="Production Inc", stripe_customer_id="cus_P", stripe_subscription_id="sub_P")

    with responses.RequestsMock(assert_all_requests_are_fired=True) as stripe_http:
        stripe_http.post(
            "https://api.stripe.com/v1/customers",
            body=json.dumps({"id": "cus_ACME", "object": "customer"}),
            content_type="application/json",
        )
        stripe_http.post(
            "https://api.stripe.com/v1/subscriptions",
            body=json.dumps(
                {"id": "sub_ACME", "object": "subscription", "status": "trialing", "trial_end": None}
            ),
            content_type="application/json",
        )
        page.goto("/admin/login/?next=/admin/")
        page.fill("input[name=username]", "operator@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.locator("input[type=submit]").click()
        page.wait_for_url("**/admin/")
        page.locator("#operator-dashboard-link a", has_text="open the dashboard").click()
        page.wait_for_url("**/admin/dashboard/")
        assert page.locator("#kpi-budget").is_visible()
        assert "Production Inc" in page.locator("#orgs-linked").inner_text()
        shoot(page, "operator-dashboard")

        page.locator(f'#orgs-pending tr[data-org="{organization.pk}"] a', has_text="Link").click()
        page.wait_for_url(f"**/{organization.pk}/link/")
        page.fill("input[name=admin_email]", "billing@acme.com")
        page.select_option("select[name=deployment_type]", "on-premise")
        page.select_option("select[name=plan_type]", "self-hosted")
        page.fill("input[name=trial_days]", "14")
        page.locator("input[type=submit]").click()
        page.wait_for_url(f"**/organization/{organization.pk}/change/")
        assert "is linked" in page.locator(".messagelist").inner_text()

    organization.refresh_from_db()
    assert organization.stripe_subscription_id == "sub_ACME"
    page.goto("/admin/dashboard/")
    assert "Every organization is linked." in page.locator("#orgs-pending").inner_text()
    assert "Acme Corp" in page.locator("#orgs-linked").inner_text()
