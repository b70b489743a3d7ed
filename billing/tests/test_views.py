import re

import pytest
from django.core import mail

from accounts.models import ApiKey
from accounts.tenancy import SESSION_WORKSPACE_KEY
from billing.models import CheckoutSession, StripeEvent, Subscription
from billing.selectors import plan_for_workspace_get

from .factories import SubscriptionFactory, UserFactory, member_add, team_workspace

pytestmark = pytest.mark.django_db


def _start_simulated_checkout(client, user) -> CheckoutSession:
    client.force_login(user)
    response = client.post("/billing/upgrade/business/")
    checkout = CheckoutSession.objects.get(workspace=user.personal_workspace)
    assert response.status_code == 302
    assert response["Location"] == checkout.checkout_url
    return checkout


def test_simulated_checkout_end_to_end(client, simulated_settings, django_capture_on_commit_callbacks):
    user = UserFactory()
    workspace = user.personal_workspace
    checkout = _start_simulated_checkout(client, user)
    client.logout()  # like Stripe's page: the unguessable id is enough

    page = client.get(f"/billing/simulated-checkout/{checkout.checkout_reference}/")
    assert page.status_code == 200
    assert "99.00 EUR" in page.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/billing/simulated-checkout/{checkout.checkout_reference}/", {"action": "pay"}
        )
    assert response.status_code == 302
    assert (
        response["Location"] == f"http://testserver/billing/success/?session_id={checkout.checkout_reference}"
    )

    event = StripeEvent.objects.get()  # went through the signed webhook: stored, then processed
    assert (event.type, event.status) == ("checkout.session.completed", StripeEvent.Status.PROCESSED)
    sub = Subscription.objects.get(workspace=workspace)
    assert (sub.plan.code, sub.status) == ("business", "active")
    assert plan_for_workspace_get(workspace=workspace).code == "business"
    assert ApiKey.objects.filter(workspace=workspace).count() == 1
    assert CheckoutSession.objects.get().status == CheckoutSession.Status.COMPLETE
    body = mail.outbox[0].body
    reveal = re.search(r"http://testserver/dashboard/keys/reveal/\S+", body)
    assert reveal is not None
    assert "sk_agentai_" not in body

    # paying twice (back button) activates nothing more
    again = client.post(f"/billing/simulated-checkout/{checkout.checkout_reference}/", {"action": "pay"})
    assert again.status_code == 302
    assert StripeEvent.objects.count() == 1
    assert len(mail.outbox) == 1

    client.force_login(user)
    success = client.get(response["Location"])
    assert "Business" in success.content.decode()


def test_simulated_checkout_cancel(client, simulated_settings):
    user = UserFactory()
    checkout = _start_simulated_checkout(client, user)
    response = client.post(
        f"/billing/simulated-checkout/{checkout.checkout_reference}/", {"action": "cancel"}
    )
    assert response["Location"] == "http://testserver/billing/cancel/"
    assert CheckoutSession.objects.get().status == CheckoutSession.Status.CANCELED
    assert not Subscription.objects.exists()


def test_simulated_checkout_is_404_with_debug_off(client, simulated_settings):
    user = UserFactory()
    checkout = _start_simulated_checkout(client, user)
    simulated_settings.DEBUG = False
    url = f"/billing/simulated-checkout/{checkout.checkout_reference}/"
    assert client.get(url).status_code == 404
    assert client.post(url, {"action": "pay"}).status_code == 404
    assert not StripeEvent.objects.exists()
    assert not Subscription.objects.exists()


def test_simulated_checkout_is_404_when_stripe_is_configured(client, simulated_settings):
    checkout = _start_simulated_checkout(client, UserFactory())
    simulated_settings.STRIPE_SECRET_KEY = "sk_test_x"
    assert client.get(f"/billing/simulated-checkout/{checkout.checkout_reference}/").status_code == 404


def test_unknown_simulated_session_is_404(client, simulated_settings):
    assert client.get("/billing/simulated-checkout/cs_test_sim_nope/").status_code == 404


def test_pricing_marks_the_current_plan(client):
    sub = SubscriptionFactory()
    client.force_login(sub.workspace.personal_owner)
    html = client.get("/pricing/").content.decode()
    assert re.search(r'data-plan="business"[^>]*>\s*<h3>Business <span class="badge">Current plan', html)
    assert "Manage billing" in html
    assert "/billing/upgrade/scale/" not in html  # changes go through the portal


def test_pricing_for_visitors_and_free_workspaces(client):
    assert "Sign up to choose Business" in client.get("/pricing/").content.decode()
    client.force_login(UserFactory())
    html = client.get("/pricing/").content.decode()
    assert "/billing/upgrade/business/" in html
    assert re.search(r'data-plan="free"[^>]*>\s*<h3>Free <span class="badge">Current plan', html)


def test_upgrade_to_an_unknown_plan_shows_an_error(client, simulated_settings):
    client.force_login(UserFactory())
    response = client.post("/billing/upgrade/platinum/", follow=True)
    assert "Unknown or unavailable plan" in response.content.decode()


def test_upgrade_requires_login_and_post(client):
    assert client.post("/billing/upgrade/business/")["Location"].startswith("/accounts/login/")
    client.force_login(UserFactory())
    assert client.get("/billing/upgrade/business/").status_code == 405


# --- the workspace chosen in the switcher -------------------------------------------------------


def _switch_to(client, workspace) -> None:
    session = client.session
    session[SESSION_WORKSPACE_KEY] = workspace.pk
    session.save()


def test_a_billing_member_buys_the_plan_of_the_workspace_chosen_in_the_switcher(
    client, simulated_settings, django_capture_on_commit_callbacks
):
    owner = UserFactory()
    team = team_workspace(owner=owner, name="Acme")
    member = member_add(team, role="billing")
    client.force_login(member)
    _switch_to(client, team)
    assert "Plans for the workspace <strong>Acme</strong>" in client.get("/pricing/").content.decode()
    response = client.post("/billing/upgrade/business/")
    checkout = CheckoutSession.objects.get()
    assert (checkout.workspace_id, checkout.created_by_id) == (team.pk, member.pk)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(response["Location"], {"action": "pay"})
    assert plan_for_workspace_get(workspace=team).code == "business"
    assert plan_for_workspace_get(workspace=member.personal_workspace).code == "free"
    assert ApiKey.objects.get(workspace=team).created_by_id == member.pk
    assert sorted(address for message in mail.outbox for address in message.to) == sorted(
        [member.email, owner.email]
    )


def test_a_developer_sees_the_plan_but_no_buttons_and_may_not_upgrade(client, simulated_settings):
    team = team_workspace(name="Acme")
    SubscriptionFactory(workspace=team)
    developer = member_add(team, role="developer")
    client.force_login(developer)
    _switch_to(client, team)
    html = client.get("/pricing/").content.decode()
    assert re.search(r'data-plan="business"[^>]*>\s*<h3>Business <span class="badge">Current plan', html)
    assert "/billing/upgrade/" not in html
    assert "Manage billing" not in html
    assert "data-plan-needs-role" in html
    assert client.post("/billing/upgrade/scale/").status_code == 403
    assert client.post("/billing/portal/").status_code == 403
    assert not CheckoutSession.objects.exists()


def test_the_success_page_shows_a_checkout_of_any_of_the_users_workspaces_only(client, simulated_settings):
    team = team_workspace()
    member = member_add(team, role="billing")
    client.force_login(member)
    _switch_to(client, team)
    client.post("/billing/upgrade/business/")
    reference = CheckoutSession.objects.get().checkout_reference
    _switch_to(client, member.personal_workspace)  # switched away since: still theirs
    page = client.get(f"/billing/success/?session_id={reference}")
    assert page.context["checkout"].checkout_reference == reference
    client.force_login(UserFactory())  # not a member of the team
    assert client.get(f"/billing/success/?session_id={reference}").context["checkout"] is None
