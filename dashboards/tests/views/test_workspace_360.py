import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import AuditEvent
from accounts.tests.factories import StaffUserFactory
from billing.models import CheckoutSession, PaymentTransaction, StripeEvent, UsageCounter
from billing.selectors import period_bounds, plan_for_workspace_get
from credits.models import CreditAccount, LedgerEntry
from credits.services import credit_grant
from dashboards.tests.factories import (
    ApiKeyFactory,
    RollupFactory,
    SubscriptionFactory,
    UsageEventFactory,
)

pytestmark = pytest.mark.django_db


def page_url(workspace):
    return f"/admin/customers/{workspace.pk}/"


def action_url(workspace, action):
    return f"/admin/customers/{workspace.pk}/{action}/"


def audit(workspace, action):
    return list(AuditEvent.objects.filter(workspace=workspace, action=action))


def balance(workspace):
    return CreditAccount.objects.filter(workspace=workspace).values_list("balance", flat=True).first() or 0


def test_customers_and_anonymous_are_sent_to_the_admin_login(client, user, workspace):
    response = client.get(page_url(workspace))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(user)
    for response in (
        client.get(page_url(workspace)),
        client.post(action_url(workspace, "suspend"), {"reason": "x"}),
    ):
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    workspace.refresh_from_db()
    assert workspace.suspended_at is None


def test_staff_without_the_admin_permissions_get_403(client, workspace):
    client.force_login(StaffUserFactory())
    assert client.get(page_url(workspace)).status_code == 403
    assert client.post(action_url(workspace, "suspend"), {"reason": "x"}).status_code == 403
    workspace.refresh_from_db()
    assert workspace.suspended_at is None


def test_the_page_shows_every_section_within_a_bounded_number_of_queries(
    midday, client, staff, user, workspace, other_workspace, django_assert_max_num_queries
):
    ApiKeyFactory(user=user, name="prod key", limits=[{"unit": "requests", "window": "day", "amount": 500}])
    RollupFactory(workspace=workspace, provider="openai", requests=7, tokens=900, cost_usd=Decimal("0.25"))
    for _ in range(25):
        UsageEventFactory(workspace=workspace)
    UsageEventFactory(workspace=other_workspace, model="other-tenant-model")
    credit_grant(workspace=workspace, amount=40, admin_user=staff, reason="welcome gift")
    PaymentTransaction.objects.create(
        workspace=workspace,
        gateway="stripe",
        kind="credit_pack",
        reference="cs_test_360",
        amount_minor=1999,
        currency="eur",
        status="paid",
        completed_at=timezone.now(),
    )
    client.force_login(staff)

    with CaptureQueriesContext(connection) as queries, django_assert_max_num_queries(24):
        response = client.get(page_url(workspace))

    assert response.status_code == 200
    html = response.content.decode()
    for section in ("plan", "keys", "usage", "credits", "payments", "audit", "actions"):
        assert f'id="{section}"' in html
    assert "prod key" in html and "500 requests/day" in html
    assert "welcome gift" in html and "credits.granted" in html
    assert "cs_test_360" in html and "19.99" in html
    assert "other-tenant-model" not in html
    raw_log = [q["sql"] for q in queries.captured_queries if '"proxy_usageevent"' in q["sql"]]
    assert raw_log, "the last calls come from the log"
    for sql in raw_log:  # never a scan of the whole log: the workspace's index, a few rows
        assert '"proxy_usageevent"."workspace_id" =' in sql and "LIMIT 20" in sql


def test_unknown_workspace_is_404(client, staff):
    client.force_login(staff)
    assert client.get("/admin/customers/999999/").status_code == 404


def test_the_workspace_admin_links_the_customer_page(client, staff, workspace):
    client.force_login(staff)
    change = client.get(f"/admin/accounts/workspace/{workspace.pk}/change/").content.decode()
    listing = client.get("/admin/accounts/workspace/").content.decode()
    assert f'href="{page_url(workspace)}"' in change and f'href="{page_url(workspace)}"' in listing


def test_actions_answer_only_post_with_a_csrf_token(staff, workspace):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff)
    assert strict.get(action_url(workspace, "suspend")).status_code == 405
    assert strict.post(action_url(workspace, "suspend"), {"reason": "x"}).status_code == 403
    workspace.refresh_from_db()
    assert workspace.suspended_at is None


def test_grant_credits_once_per_form_with_its_reason(client, staff, workspace):
    client.force_login(staff)
    form = {"credits": "50", "reason": "outage goodwill", "nonce": str(uuid.uuid4()), "expires_in_days": "30"}

    response = client.post(action_url(workspace, "grant-credits"), form)
    client.post(action_url(workspace, "grant-credits"), form)  # a double submit

    assert response.status_code == 302 and response["Location"].startswith(page_url(workspace))
    assert balance(workspace) == 50
    [event] = audit(workspace, "credits.granted")
    assert event.actor == staff and event.details["reason"] == "outage goodwill"
    page = client.get(response["Location"]).content.decode()
    assert "Granted 50 credits" in page


def test_revoke_credits_writes_an_adjustment_and_refuses_more_than_available(client, staff, workspace):
    credit_grant(workspace=workspace, amount=30, admin_user=staff, reason="trial")
    client.force_login(staff)

    client.post(
        action_url(workspace, "revoke-credits"),
        {"credits": "12", "reason": "trial abuse", "nonce": uuid.uuid4()},
    )
    refused = client.post(
        action_url(workspace, "revoke-credits"),
        {"credits": "99", "reason": "too much", "nonce": uuid.uuid4()},
        follow=True,
    )

    assert balance(workspace) == 18
    entry = LedgerEntry.objects.filter(workspace=workspace, kind=LedgerEntry.Kind.ADJUSTMENT).get()
    assert entry.amount == -12 and entry.metadata["reason"] == "trial abuse"
    [event] = audit(workspace, "credits.revoked")
    assert event.actor == staff and event.details == {
        "amount": 12,
        "reason": "trial abuse",
        "balance_after": 18,
    }
    assert "Only 18 credits are available" in refused.content.decode()


def test_reset_quota_zeroes_the_current_periods_and_keeps_what_was_used(midday, client, staff, workspace):
    now = timezone.now()
    start, end = period_bounds(period="month", now=now)
    current = UsageCounter.objects.create(
        workspace=workspace, meter="requests", period="month", period_start=start, period_end=end, used=42
    )
    last = UsageCounter.objects.create(
        workspace=workspace,
        meter="requests",
        period="month",
        period_start=start - timedelta(days=40),
        period_end=start - timedelta(days=9),
        used=7,
    )
    client.force_login(staff)

    client.post(action_url(workspace, "reset-quota"), {"reason": "billing dispute"})

    current.refresh_from_db()
    last.refresh_from_db()
    assert (current.used, last.used) == (0, 7)
    [event] = audit(workspace, "quota.period_reset")
    assert event.actor == staff and event.details["reason"] == "billing dispute"
    assert event.details["counters"][0]["used"] == 42


def test_change_plan_of_a_workspace_without_stripe(
    client, staff, workspace, django_capture_on_commit_callbacks
):
    client.force_login(staff)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            action_url(workspace, "change-plan"), {"plan": "business", "reason": "partner deal"}
        )

    assert response.status_code == 302
    assert plan_for_workspace_get(workspace=workspace).code == "business"
    [event] = audit(workspace, "workspace.plan_changed")
    assert event.actor == staff
    assert event.details["from"] == "free" and event.details["to"] == "business"
    assert event.details["reason"] == "partner deal"


def test_change_plan_of_a_real_stripe_subscription_is_refused(client, staff, workspace):
    SubscriptionFactory(workspace=workspace, stripe_subscription_id="sub_live_1")
    client.force_login(staff)

    page = client.post(
        action_url(workspace, "change-plan"), {"plan": "scale", "reason": "upsell"}, follow=True
    ).content.decode()

    assert "change its plan in Stripe" in page
    assert plan_for_workspace_get(workspace=workspace).code == "business"
    assert not audit(workspace, "workspace.plan_changed")


def test_suspend_and_reinstate_from_the_page(client, staff, workspace):
    client.force_login(staff)

    client.post(action_url(workspace, "suspend"), {"reason": "card testing"})
    workspace.refresh_from_db()
    assert workspace.suspended_at is not None and workspace.suspension_reason == "card testing"
    page = client.get(page_url(workspace)).content.decode()
    assert 'id="suspended"' in page and 'id="reinstate"' in page

    client.post(action_url(workspace, "reinstate"), {"reason": ""})
    workspace.refresh_from_db()
    assert workspace.suspended_at is None
    assert [
        e.actor for e in audit(workspace, "workspace.suspended") + audit(workspace, "workspace.reinstated")
    ] == [
        staff,
        staff,
    ]


def test_a_blank_reason_changes_nothing(client, staff, workspace):
    client.force_login(staff)
    page = client.post(action_url(workspace, "suspend"), {"reason": "  "}, follow=True).content.decode()
    workspace.refresh_from_db()
    assert workspace.suspended_at is None
    assert "Nothing done" in page


def test_change_plan_of_a_simulated_stripe_subscription_goes_through_the_portal(
    client, staff, user, workspace, settings, django_capture_on_commit_callbacks
):
    settings.DEBUG = True
    settings.STRIPE_SECRET_KEY = ""
    settings.SIMULATED_CHECKOUT_ENABLED = True
    settings.SITE_URL = "http://testserver"
    settings.CHECKOUT_REDIRECT_HOSTS = ["testserver"]
    client.force_login(user)
    client.post("/billing/upgrade/business/")
    checkout = CheckoutSession.objects.get(workspace=workspace)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/billing/simulated-checkout/{checkout.checkout_reference}/", {"action": "pay"})
    client.force_login(staff)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(action_url(workspace, "change-plan"), {"plan": "scale", "reason": "annual deal"})

    assert plan_for_workspace_get(workspace=workspace).code == "scale"
    assert StripeEvent.objects.filter(type="customer.subscription.updated").exists()
    assert StripeEvent.objects.filter(type="invoice.paid").exists()  # the proration, as the portal
    [event] = audit(workspace, "workspace.plan_changed")
    assert event.actor == staff and event.details["route"] == "portal"
    assert [e.actor for e in audit(workspace, "subscription.plan_change_requested")] == [staff]
