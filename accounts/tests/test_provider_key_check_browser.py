"""The admin's "Test the key" button in a real browser: the typed key is asked about, the
provider's answer appears beside it, the key stays in the field and nothing is saved."""

from __future__ import annotations

import pytest

from accounts.models import ProviderCredential
from accounts.tests.factories import SuperuserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SECRET = "sk-typed-in-the-browser-0123456789"


@pytest.fixture
def page(chromium, live_server, settings):
    settings.RATELIMIT_ENABLE = False
    context = chromium.new_context(base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def test_test_button_shows_the_providers_answer_and_saves_nothing(page, provider_fake):
    admin = SuperuserFactory(password="root-pass-123456")
    page.goto("/admin/login/")
    page.fill("input[name=username]", admin.email)
    page.fill("input[name=password]", "root-pass-123456")
    page.locator("input[type=submit]").click()
    page.goto("/admin/accounts/providercredential/add/")
    page.select_option("#id_provider", "deepseek")
    page.select_option("#id_scope", "global")
    page.fill("#id_new_secret", SECRET)

    page.click("#provider-key-test-button")
    result = page.locator("#provider-key-test-result[data-outcome=ok]")
    result.wait_for()
    assert "accepted the key" in result.inner_text()

    provider_fake.mode = "401_echo"
    page.click("#provider-key-test-button")
    rejected = page.locator("#provider-key-test-result[data-outcome=rejected]")
    rejected.wait_for()
    assert "401" in rejected.inner_text() and "Incorrect API key provided" in rejected.inner_text()
    assert SECRET not in page.content()  # the answer never quotes it; the field's value is not markup
    assert page.input_value("#id_new_secret") == SECRET  # still typed, ready to fix or save
    assert not ProviderCredential.objects.exists()
