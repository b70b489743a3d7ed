"""The workspace pages in a real browser (Playwright + Debian chromium), at a laptop and a phone
width: no serious axe violation, nothing scrolls sideways, no console error; the switcher
changes the workspace from the keyboard; inviting and accepting work end to end."""

from __future__ import annotations

import re

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from django.core import mail

from accounts.models import ApiKey, Membership, Role
from accounts.services.workspaces import invitation_create, workspace_create
from accounts.tests.factories import UserFactory, member_add
from billing.services import plan_catalog_seed
from proxy.catalog import proxy_catalog_seed

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-battery"
VIEWPORTS = {"laptop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
AXE = Axe()


@pytest.fixture
def browser(chromium, settings, live_server):
    settings.DEBUG = True
    settings.SITE_URL = live_server.url
    settings.RATELIMIT_ENABLE = False
    plan_catalog_seed()  # the dashboard shows the plan (transactional tests flush the seed)
    return chromium


def _page(browser, live_server, viewport):
    context = browser.new_context(base_url=live_server.url, viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.problems = []
    page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
    page.on("dialog", lambda dialog: dialog.accept())  # data-confirm's confirm()
    return page


def _login(page, email):
    page.goto("/accounts/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url(re.compile(r".*/dashboard/$"))


def _problems(page, path) -> list[str]:
    page.goto(path)
    page.wait_for_load_state("load")
    found = [
        f"{path}: {v['id']} ({v['impact']}): {[n['target'] for n in v['nodes'][:3]]}"
        for v in AXE.run(page, options={"resultTypes": ["violations"]}).response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if overflow > 0:
        found.append(f"{path}: scrolls sideways by {overflow}px")
    found += [f"{path}: {p}" for p in page.problems]
    page.problems.clear()
    return found


@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
def test_workspace_pages_are_accessible(browser, live_server, viewport):
    owner = UserFactory(email="owner@example.com", password=PASSWORD)
    workspace = workspace_create(user=owner, name="Acme")
    member_add(workspace, role=Role.DEVELOPER, user=UserFactory(email="dev@example.com"))
    invitation_create(workspace=workspace, actor=owner, email="pending@example.com", role="admin")
    _, url = invitation_create(
        workspace=owner.personal_workspace, actor=owner, email="owner-too@example.com", role="billing"
    )
    page = _page(browser, live_server, VIEWPORTS[viewport])
    found = _problems(page, url.replace(live_server.url, ""))  # signed out: log in / sign up
    _login(page, "owner@example.com")
    for path in (f"/workspaces/{workspace.pk}/members/", "/workspaces/new/", "/accounts/profile/"):
        found += _problems(page, path)
    assert not found, "\n".join(found)


def test_switch_invite_and_accept_end_to_end(browser, live_server):
    owner = UserFactory(email="owner@example.com", password=PASSWORD)
    workspace = workspace_create(user=owner, name="Acme")
    page = _page(browser, live_server, VIEWPORTS["laptop"])
    _login(page, "owner@example.com")

    page.get_by_label("Workspace", exact=True).select_option(label="Acme")
    page.get_by_role("button", name="Switch").click()
    page.get_by_role("link", name="Members").click()
    page.wait_for_url(f"**/workspaces/{workspace.pk}/members/")
    page.get_by_label("Email address").fill("newcomer@example.com")
    page.get_by_label("Role", exact=True).select_option("billing")
    page.get_by_role("button", name="Send the invitation").click()
    page.wait_for_url(f"**/workspaces/{workspace.pk}/members/")
    assert "Invitation sent to newcomer@example.com" in page.content()

    accept_path = re.search(r"/invitations/accept/[^/\s]+/", mail.outbox[-1].body).group(0)
    UserFactory(email="newcomer@example.com", password=PASSWORD)
    guest = _page(browser, live_server, VIEWPORTS["phone"])
    guest.goto(accept_path)
    guest.get_by_role("link", name="Log in").click()
    guest.fill("input[name=username]", "newcomer@example.com")
    guest.fill("input[name=password]", PASSWORD)
    guest.locator("main form button[type=submit]").first.click()
    guest.wait_for_url(f"**{accept_path}")
    guest.get_by_role("button", name="Accept the invitation").click()
    guest.wait_for_url(re.compile(r".*/dashboard/$"))

    assert Membership.objects.get(workspace=workspace, user__email="newcomer@example.com").role == "billing"
    assert page.problems == [] and guest.problems == []


def test_a_team_from_invitation_to_the_owner_seeing_the_developers_call(browser, live_server, settings):
    """The owner invites a developer; the developer signs up from the link, lands in the team,
    creates a key and calls the proxy; the owner sees the call on the team's dashboard and the
    people and key changes in its audit log."""
    settings.SANDBOX_PROVIDER_ENABLED = True  # the call is answered locally
    settings.EMAIL_VERIFICATION = "mandatory"  # the invitation's link confirms the address
    proxy_catalog_seed()
    owner = UserFactory(email="owner@example.com", password=PASSWORD)
    workspace = workspace_create(user=owner, name="Acme")
    page = _page(browser, live_server, VIEWPORTS["laptop"])
    _login(page, "owner@example.com")
    page.get_by_label("Workspace", exact=True).select_option(label="Acme")
    page.get_by_role("button", name="Switch").click()
    page.get_by_role("link", name="Members").click()
    page.get_by_label("Email address").fill("dev@example.com")
    page.get_by_label("Role", exact=True).select_option("developer")
    page.get_by_role("button", name="Send the invitation").click()
    accept_path = re.search(r"/invitations/accept/[^/\s]+/", mail.outbox[-1].body).group(0)

    dev = _page(browser, live_server, VIEWPORTS["phone"])
    dev.goto(accept_path)
    dev.get_by_role("link", name="Sign up").click()
    dev.fill("input[name=email]", "dev@example.com")
    dev.fill("input[name=password1]", "a-very-decent-passphrase")
    dev.fill("input[name=password2]", "a-very-decent-passphrase")
    dev.locator("main form button[type=submit]").first.click()
    dev.wait_for_url(f"**{accept_path}")
    dev.get_by_role("button", name="Accept the invitation").click()
    dev.wait_for_url(re.compile(r".*/dashboard/$"))
    dev.get_by_role("link", name="Keys", exact=True).click()  # the tabs stay visible on a phone
    dev.wait_for_url(re.compile(r".*/keys/$"))
    dev.get_by_label("Key name").fill("dev laptop")
    dev.get_by_role("button", name="Create a key").click()
    plaintext = dev.locator("#new-key-value").inner_text()

    answer = httpx.post(
        f"{live_server.url}/api/proxy/v1/chat/completions",
        headers={"Authorization": f"Bearer {plaintext}"},
        json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hello team"}]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text

    page.goto("/dashboard/")
    prefix = ApiKey.objects.get(name="dev laptop", created_by__email="dev@example.com").prefix
    assert prefix in page.locator("#recent-calls tbody").inner_text()
    page.goto(f"/workspaces/{workspace.pk}/audit/")
    log = page.locator("main").inner_text()
    for action in ("invitation.created", "invitation.accepted", "api_key.created"):
        assert action in log
    assert "dev@example.com" in log
    assert page.problems == [] and dev.problems == []
