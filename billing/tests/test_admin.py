import pytest
from django.core.cache import cache

import billing.tests.stripe_events as se
from billing.gateways import chargily as chargily_client
from billing.models import ChargilyEvent, PaymentTransaction, Plan, StripeEvent
from billing.selectors import CATALOG_VERSION_KEY, plan_for_workspace_get
from billing.services import (
    stripe_event_store,
)

from .chargily_events import SECRET
from .factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_reprocess_action_processes_failed_events(staff_client):
    workspace = UserFactory().personal_workspace
    row, _ = stripe_event_store(
        event=se.event("checkout.session.completed", se.checkout_session(workspace=workspace))
    )
    StripeEvent.objects.filter(pk=row.pk).update(status=StripeEvent.Status.FAILED, error="boom")
    response = staff_client.post(
        "/admin/billing/stripeevent/", {"action": "reprocess", "_selected_action": [row.pk]}, follow=True
    )
    assert response.status_code == 200
    row.refresh_from_db()
    assert (row.status, row.error) == (StripeEvent.Status.PROCESSED, "")
    assert plan_for_workspace_get(workspace=workspace).code == "business"


def test_events_are_read_only(staff_client):
    row, _ = stripe_event_store(event=se.event("customer.created", {"id": "cus_1"}))
    page = staff_client.get(f"/admin/billing/stripeevent/{row.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()


def test_plan_edit_in_admin_invalidates_the_catalogue(staff_client, django_capture_on_commit_callbacks):
    plan_for_workspace_get(workspace=UserFactory().personal_workspace)
    before = cache.get(CATALOG_VERSION_KEY)
    plan = Plan.objects.get(code="free")
    data = {
        "code": "free",
        "name": "Free",
        "price_minor": 0,
        "currency": "eur",
        "interval": "month",
        "is_public": "on",
        "is_active": "on",
        "rate_limit_per_minute": 9,
        "routing_weights": '{"groq": 100}',
        "fallback_provider": "",
        "default_max_tokens": 1024,
        "max_tokens_cap": "",
        "sort_order": 0,
        "credit_price_micros": 12_500,
        "stripe_price_id": "",
        "quotas-TOTAL_FORMS": 0,
        "quotas-INITIAL_FORMS": 0,
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(f"/admin/billing/plan/{plan.pk}/change/", data)
    assert response.status_code == 302
    assert cache.get(CATALOG_VERSION_KEY) != before
    reloaded = plan_for_workspace_get(workspace=UserFactory().personal_workspace)
    assert (reloaded.rate_limit_per_minute, reloaded.credit_price_micros) == (9, 12_500)


def test_payment_transactions_and_chargily_events_are_listed_read_only(staff_client, settings):
    settings.DEBUG = True
    settings.CHARGILY_API_KEY = ""
    settings.CHARGILY_SECRET_KEY = SECRET
    settings.CHECKOUT_REDIRECT_HOSTS = ["testserver"]
    settings.SITE_URL = "http://testserver"
    staff_client.post("/payment/subscribe/student", content_type="application/json")
    tx = PaymentTransaction.objects.get()
    page = staff_client.get("/admin/billing/paymenttransaction/?gateway=chargily")
    assert page.status_code == 200 and b"1,590.00 DZD" in page.content
    assert staff_client.get(f"/admin/billing/paymenttransaction/{tx.pk}/change/").status_code == 200
    assert staff_client.get("/admin/billing/paymenttransaction/add/").status_code == 403
    # A failed event is reprocessed through the service (it fails again: the amount is wrong).
    body = (
        b'{"id": "evt_admin", "type": "checkout.paid", "data": {"id": "x", "amount": 1, "currency": "dzd"}}'
    )
    staff_client.post(
        "/payment/webhook/chargily",
        data=body,
        content_type="application/json",
        HTTP_SIGNATURE=chargily_client.signature_compute(payload=body, secret=SECRET),
    )
    event = ChargilyEvent.objects.get()
    assert event.status == "ignored"  # no such checkout: not ours
    ChargilyEvent.objects.filter(pk=event.pk).update(status="failed")
    staff_client.post(
        "/admin/billing/chargilyevent/", {"action": "reprocess", "_selected_action": [event.pk]}
    )
    event.refresh_from_db()
    assert event.status == "ignored" and event.attempts == 2
