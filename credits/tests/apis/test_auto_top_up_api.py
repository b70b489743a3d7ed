"""GET/PATCH /api/credits/auto-top-up, the credits page's form, and the card a Stripe pack
checkout saves for it."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
import responses
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import AuditEvent
from accounts.tenancy import SESSION_WORKSPACE_KEY
from credits.models import AutoTopUp, CreditAccount

from ..auto_top_up_helpers import RECEIPT_URL, WEBHOOK_SECRET, card_purchase, deliver, stripe_event

URL = "/api/credits/auto-top-up"


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET


@pytest.mark.django_db
def test_defaults_until_changed(catalogue, workspace, user_client):
    response = user_client.get(URL)

    assert response.status_code == 200
    assert response.json() == {
        "enabled": False,
        "packId": None,
        "thresholdCredits": None,
        "maxPerMonth": 3,
        "usedThisMonth": 0,
        "disabledReason": "",
        "lastFailureAt": None,
        "hasSavedCard": False,
    }


@pytest.mark.django_db
def test_an_owner_turns_it_on_after_a_card_purchase_and_it_is_audited(
    catalogue, user, workspace, user_client
):
    card_purchase(workspace)

    response = user_client.patch(
        URL,
        {"enabled": True, "packId": "pack_500", "thresholdCredits": 100, "maxPerMonth": 2},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["enabled"], body["packId"], body["thresholdCredits"], body["maxPerMonth"]) == (
        True,
        "pack_500",
        100,
        2,
    )
    assert body["hasSavedCard"] is True
    assert CreditAccount.objects.get(workspace=workspace).auto_top_up_below == 100
    audit = AuditEvent.objects.get(workspace=workspace, action="credits.auto_top_up_updated")
    assert audit.actor_id == user.pk and audit.details["after"]["enabled"] is True

    off = user_client.patch(URL, {"enabled": False}, format="json")
    assert off.json()["enabled"] is False
    assert CreditAccount.objects.get(workspace=workspace).auto_top_up_below is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"thresholdCredits": "100"}, "thresholdCredits"),
        ({"thresholdCredits": 0}, "thresholdCredits"),
        ({"thresholdCredits": 1.5}, "thresholdCredits"),
        ({"maxPerMonth": 0}, "maxPerMonth"),
        ({"maxPerMonth": 32}, "maxPerMonth"),
        ({"enabled": "yes"}, "enabled"),
        ({"packId": "pack_nope"}, "packId"),
        ({"surprise": 1}, "surprise"),
        ({"enabled": True}, "packId"),  # nothing chosen yet
        ({"enabled": True, "packId": "pack_100", "thresholdCredits": 50}, "enabled"),  # no saved card
    ],
)
def test_bad_input_is_a_400_in_the_error_shape_and_changes_nothing(
    catalogue, workspace, user_client, body, param
):
    response = user_client.patch(URL, body, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", param)
    assert not AutoTopUp.objects.filter(workspace=workspace, is_enabled=True).exists()


@pytest.mark.django_db
def test_a_body_that_is_not_an_object_is_a_400(catalogue, user_client):
    response = user_client.patch(URL, [1, 2], format="json")

    assert response.status_code == 400
    assert "error" in response.json()


@pytest.mark.django_db
def test_a_developer_may_not_read_or_change_it(catalogue, workspace, member):
    client = APIClient()
    client.force_authenticate(member("developer"))

    assert client.get(URL, HTTP_X_WORKSPACE=str(workspace.pk)).status_code == 403
    response = client.patch(URL, {"maxPerMonth": 5}, format="json", HTTP_X_WORKSPACE=str(workspace.pk))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.django_db
def test_a_billing_member_turns_it_on_from_the_credits_page(catalogue, workspace, member):
    card_purchase(workspace)
    person = member("billing")
    client = Client()
    client.force_login(person)
    session = client.session
    session[SESSION_WORKSPACE_KEY] = workspace.pk  # chosen in the switcher
    session.save()

    saved = client.post(
        "/credits/auto-top-up/",
        {"enabled": "on", "pack": "pack_500", "threshold_credits": "120", "max_per_month": "4"},
    )
    page = client.get("/credits/")

    assert saved.status_code == 302 and saved["Location"].endswith("/credits/#auto-top-up")
    row = AutoTopUp.objects.get(workspace=workspace)
    assert (row.is_enabled, row.pack.code, row.threshold_credits, row.max_per_month) == (
        True,
        "pack_500",
        120,
        4,
    )
    assert 'data-auto-top-up="on"' in page.content.decode()

    bad = client.post(
        "/credits/auto-top-up/", {"enabled": "on", "pack": "pack_500", "threshold_credits": "x"}
    )
    assert bad.status_code == 302
    assert "Auto top-up not saved" in client.get("/credits/").content.decode()


@pytest.mark.django_db
def test_a_stripe_receipt_shows_in_the_history(catalogue, user, workspace):
    payment_intent = card_purchase(workspace)
    charge = {
        "id": "ch_card",
        "object": "charge",
        "paid": True,
        "status": "succeeded",
        "payment_intent": payment_intent,
        "receipt_url": RECEIPT_URL,
    }
    assert deliver(stripe_event("evt_charge_card", "charge.succeeded", charge)).status_code == 200
    client = Client()
    client.force_login(user)

    page = client.get("/credits/").content.decode()

    assert f'href="{RECEIPT_URL}" data-receipt="stripe"' in page


@pytest.mark.django_db
def test_a_stripe_pack_checkout_saves_the_card_for_auto_top_up(catalogue, user_client, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_credits"
    settings.STRIPE_API_BASE = ""
    settings.CHECKOUT_REDIRECT_HOSTS = ["app.example"]
    with responses.RequestsMock() as stripe_http:
        stripe_http.post(
            "https://api.stripe.com/v1/checkout/sessions",
            json={"id": "cs_test_save", "object": "checkout.session", "url": "https://checkout.stripe.com/x"},
        )
        user_client.post(
            "/api/credits/buy",
            {
                "packId": "pack_100",
                "successUrl": "https://app.example/ok",
                "cancelUrl": "https://app.example/no",
            },
            format="json",
        )
        sent = parse_qs(stripe_http.calls[0].request.body)

    assert sent["payment_intent_data[setup_future_usage]"] == ["off_session"]
    assert sent["customer_creation"] == ["always"]
