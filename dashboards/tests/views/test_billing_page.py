"""The Billing page (``/billing/``): the plan with the billing portal, credits with auto top-up,
and the payments with their receipts."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Role
from accounts.tenancy import SESSION_WORKSPACE_KEY
from billing.models import CheckoutSession, PaymentTransaction, Plan
from credits.services import credit_grant
from dashboards.tests.factories import SubscriptionFactory, team_workspace_create

pytestmark = pytest.mark.django_db

RECEIPT = "https://pay.stripe.com/receipts/payment/CAcaFwoVYWNjdF8xTjFQbWRCRkFaUkxYWlRNKOe"


def _payment(workspace, reference, *, status="paid", receipt_url="", kind="credit_pack", amount=1999, **kw):
    return PaymentTransaction.objects.create(
        workspace=workspace,
        gateway=kw.pop("gateway", "stripe"),
        kind=kind,
        reference=reference,
        amount_minor=amount,
        currency=kw.pop("currency", "eur"),
        status=status,
        receipt_url=receipt_url,
        completed_at=timezone.now() if status != "pending" else None,
        **kw,
    )


def _switch(client, workspace):
    session = client.session
    session[SESSION_WORKSPACE_KEY] = workspace.pk
    session.save()


def test_the_billing_page_is_for_roles_that_read_billing(client, user, other_user):
    developer_team = team_workspace_create(owner=other_user, members={user: Role.DEVELOPER})
    client.force_login(user)
    _switch(client, developer_team)
    assert client.get("/billing/").status_code == 403
    assert 'data-tab="billing"' not in client.get("/dashboard/").content.decode()

    billing_team = team_workspace_create(owner=other_user, members={user: Role.BILLING}, name="Money")
    _switch(client, billing_team)
    response = client.get("/billing/")
    assert response.status_code == 200
    assert 'aria-current="page" data-tab="billing"' in response.content.decode()


def test_a_subscriber_manages_the_plan_from_the_billing_page(client, user, workspace):
    pro = Plan.objects.filter(price_minor__gt=0, currency="eur").order_by("price_minor").first()
    SubscriptionFactory(workspace=workspace, plan=pro, current_period_end=timezone.now() + timedelta(days=20))
    client.force_login(user)

    html = client.get("/billing/").content.decode()

    assert f'data-plan="{pro.code}"' in html and "Renews on" in html
    assert 'action="/billing/portal/"' in html and "Manage billing" in html


def test_payments_list_paid_and_failed_with_receipts_newest_first(client, user, workspace, other_workspace):
    _payment(workspace, "cs_old_pack", receipt_url=RECEIPT, amount=1999)
    _payment(workspace, "cs_failed", status="failed", kind="plan", amount=4900)
    _payment(workspace, "cs_open", status="pending")  # a checkout left open is not a payment
    _payment(other_workspace, "cs_theirs", receipt_url=RECEIPT)
    client.force_login(user)

    html = client.get("/billing/").content.decode()

    rows = [part.split('"', 1)[0] for part in html.split('data-payment="')[1:]]
    assert rows == ["cs_failed", "cs_old_pack"]
    old = html[html.index('data-payment="cs_old_pack"') :]
    old = old[: old.index("</tr>")]
    assert 'data-status="paid"' in old and "19.99 EUR" in old and f'href="{RECEIPT}"' in old
    failed = html[html.index('data-payment="cs_failed"') :]
    failed = failed[: failed.index("</tr>")]
    assert "49.00 EUR" in failed and "failed" in failed and "data-receipt" not in failed


def test_a_chargily_payment_links_its_payment_page(client, user, workspace):
    checkout = CheckoutSession.objects.create(
        workspace=workspace,
        checkout_reference="chargily_ref_1",
        kind="credit_pack",
        gateway="chargily",
        mode="payment",
        line_item={},
        amount_minor=159000,
        currency="dzd",
        success_url="https://example.test/ok",
        cancel_url="https://example.test/ko",
        checkout_url="https://pay.chargily.net/test/checkouts/01hx/pay",
    )
    _payment(
        workspace, "chargily_ref_1", gateway="chargily", currency="dzd", amount=159000, checkout=checkout
    )
    client.force_login(user)

    html = client.get("/billing/").content.decode()

    assert 'href="https://pay.chargily.net/test/checkouts/01hx/pay" data-receipt="chargily"' in html
    assert "1,590.00 DZD" in html


def test_the_credit_balance_and_auto_top_up_show(client, user, workspace, staff):
    credit_grant(workspace=workspace, amount=250, admin_user=staff, reason="welcome")
    client.force_login(user)

    html = client.get("/billing/").content.decode()

    assert 'id="billing-credits" data-available="250"' in html
    assert 'data-auto-top-up="off"' in html and 'href="/credits/#auto-top-up"' in html
