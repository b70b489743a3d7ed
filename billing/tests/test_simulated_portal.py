"""The simulated billing portal (DEBUG, no Stripe): every action goes through the one webhook
pipeline as signed Stripe events, and our mirror changes only because of them."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from accounts.tenancy import SESSION_WORKSPACE_KEY
from billing.models import CheckoutSession, StripeEvent, Subscription
from billing.selectors import plan_for_workspace_get

from .factories import UserFactory, member_add

pytestmark = pytest.mark.django_db

PORTAL = "/billing/simulated-portal/"


@pytest.fixture
def subscriber(client, simulated_settings, django_capture_on_commit_callbacks):
    """A user who paid Business through the simulated checkout (the path a demo takes)."""
    user = UserFactory()
    workspace = user.personal_workspace
    client.force_login(user)
    client.post("/billing/upgrade/business/")
    checkout = CheckoutSession.objects.get(workspace=workspace)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/billing/simulated-checkout/{checkout.checkout_reference}/", {"action": "pay"})
    return user


def _events(type_: str) -> list[StripeEvent]:
    return list(StripeEvent.objects.filter(type=type_).order_by("received_at"))


def test_manage_billing_opens_the_simulated_portal(client, subscriber):
    response = client.post("/billing/portal/")
    assert response.status_code == 302
    assert response["Location"] == "http://testserver/billing/simulated-portal/"
    page = client.get(PORTAL)
    assert page.status_code == 200
    body = page.content.decode()
    assert "Business" in body and "Renews on" in body
    assert "99.00 EUR" in body  # the checkout's payment is listed as a receipt


def test_portal_api_answers_the_simulated_portal_url(client, subscriber):
    response = client.post("/api/billing/portal", {}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert "/billing/simulated-portal/" in str(response.json())


def test_cancel_at_period_end_then_resume(client, subscriber):
    row = Subscription.objects.get(workspace=subscriber.personal_workspace)
    period_end = row.current_period_end

    response = client.post(PORTAL, {"action": "cancel"})
    assert response.status_code == 302 and response["Location"] == PORTAL  # Post/Redirect/Get
    row.refresh_from_db()
    assert row.cancel_at_period_end and row.status == "active"
    assert row.current_period_end == period_end.replace(microsecond=0)  # Stripe counts in seconds
    assert plan_for_workspace_get(workspace=subscriber.personal_workspace).code == "business"
    (event,) = _events("customer.subscription.updated")
    assert event.status == StripeEvent.Status.PROCESSED
    assert event.payload["data"]["object"]["cancel_at_period_end"] is True
    assert "Ends on" in client.get(PORTAL).content.decode()

    client.post(PORTAL, {"action": "resume"})
    row.refresh_from_db()
    assert not row.cancel_at_period_end
    assert len(_events("customer.subscription.updated")) == 2


def test_preview_then_change_plan_invoices_the_previewed_proration(
    client, subscriber, django_capture_on_commit_callbacks
):
    row = Subscription.objects.get(workspace=subscriber.personal_workspace)
    # Halfway through the period: the upgrade costs about half the price difference.
    now = timezone.now()
    Subscription.objects.filter(pk=row.pk).update(current_period_end=now + timedelta(days=15))

    preview = client.get(PORTAL, {"plan": "scale"})
    assert preview.status_code == 200
    due = preview.context["preview"].amount_due_minor
    assert 0 < due < 29900 - 9900
    assert "Charged now" in preview.content.decode()

    with django_capture_on_commit_callbacks(execute=True):  # the request commits: the cached plan goes
        response = client.post(PORTAL, {"action": "change", "plan": "scale"})
    assert response.status_code == 302 and response["Location"] == PORTAL
    row.refresh_from_db()
    assert row.plan.code == "scale" and row.status == "active"
    assert plan_for_workspace_get(workspace=subscriber.personal_workspace).code == "scale"
    (updated,) = _events("customer.subscription.updated")
    (paid,) = _events("invoice.paid")
    assert {updated.status, paid.status} == {StripeEvent.Status.PROCESSED}
    invoice = paid.payload["data"]["object"]
    assert invoice["billing_reason"] == "subscription_update"
    assert invoice["parent"]["subscription_details"]["subscription"] == row.stripe_subscription_id
    # what was previewed is what was charged (a few seconds passed: within a cent or two)
    assert abs(invoice["amount_paid"] - due) <= 2
    assert [line["amount"] < 0 for line in invoice["lines"]["data"]] == [True, False]

    page = client.get(PORTAL).content.decode()
    assert invoice["number"] in page and "Plan change (prorated)" in page


def test_downgrade_leaves_a_credit_used_by_the_next_upgrade(
    client, subscriber, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):  # the request commits: the cached plan goes
        client.post(PORTAL, {"action": "change", "plan": "pro"})
    credit = _events("invoice.paid")[-1].payload["data"]["object"]
    assert credit["amount_paid"] == 0 and credit["ending_balance"] < 0
    assert plan_for_workspace_get(workspace=subscriber.personal_workspace).code == "pro"

    preview = client.get(PORTAL, {"plan": "business"}).context["preview"]
    assert preview.starting_balance_minor == credit["ending_balance"]
    assert preview.amount_due_minor == max(preview.total_minor + credit["ending_balance"], 0)


def test_plan_change_is_refused_while_canceling_and_for_other_currencies(client, subscriber):
    client.post(PORTAL, {"action": "cancel"})
    client.post(PORTAL, {"action": "change", "plan": "scale"})
    assert Subscription.objects.get(workspace=subscriber.personal_workspace).plan.code == "business"
    assert not _events("invoice.paid")
    client.post(PORTAL, {"action": "resume"})
    client.post(PORTAL, {"action": "change", "plan": "free"})  # not a paid plan: no change
    assert Subscription.objects.get(workspace=subscriber.personal_workspace).plan.code == "business"


def test_portal_is_404_with_debug_off_or_stripe_configured(client, subscriber, simulated_settings):
    simulated_settings.DEBUG = False
    assert client.get(PORTAL).status_code == 404
    assert client.post(PORTAL, {"action": "cancel"}).status_code == 404
    simulated_settings.DEBUG = True
    simulated_settings.STRIPE_SECRET_KEY = "sk_test_configured"
    assert client.get(PORTAL).status_code == 404
    assert not Subscription.objects.get(workspace=subscriber.personal_workspace).cancel_at_period_end


def test_portal_shows_only_the_current_workspaces_subscription(client, subscriber):
    other = UserFactory()
    client.force_login(other)
    page = client.get(PORTAL)
    assert page.status_code == 200 and "no subscription to manage" in page.content.decode()
    client.post(PORTAL, {"action": "cancel"})
    assert not Subscription.objects.get(workspace=subscriber.personal_workspace).cancel_at_period_end


def test_portal_requires_login(client, simulated_settings):
    assert client.get(PORTAL).status_code == 302


def _act_in(client, user, workspace) -> None:
    client.force_login(user)
    session = client.session
    session[SESSION_WORKSPACE_KEY] = workspace.pk
    session.save()


def test_a_billing_member_cancels_the_workspaces_plan_and_the_audit_log_names_them(client, subscriber):
    workspace = subscriber.personal_workspace  # a personal workspace may have members too
    member = member_add(workspace, role="billing")
    _act_in(client, member, workspace)
    assert "Renews on" in client.get(PORTAL).content.decode()
    client.post(PORTAL, {"action": "cancel"})
    assert Subscription.objects.get(workspace=workspace).cancel_at_period_end
    requested = AuditEvent.objects.get(workspace=workspace, action="subscription.cancel_requested")
    assert requested.actor_id == member.pk
    mirrored = AuditEvent.objects.get(workspace=workspace, action="subscription.updated")
    assert mirrored.actor_id is None  # the webhook's doing


def test_a_developer_may_neither_see_nor_change_the_workspaces_billing(client, subscriber):
    workspace = subscriber.personal_workspace
    _act_in(client, member_add(workspace, role="developer"), workspace)
    assert client.get(PORTAL).status_code == 403
    assert client.post(PORTAL, {"action": "cancel"}).status_code == 403
    assert not Subscription.objects.get(workspace=workspace).cancel_at_period_end
