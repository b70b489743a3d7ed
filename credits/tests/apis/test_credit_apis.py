import json
from urllib.parse import parse_qs

import pytest
import responses
from rest_framework.test import APIClient

from accounts.services import api_key_create
from credits.models import CreditAccount, CreditPack, LedgerEntry, UpsellEvent
from credits.services import credit_consume, credit_hold


@pytest.fixture
def simulated_checkout(settings):
    settings.DEBUG = True
    settings.SIMULATED_CHECKOUT_ENABLED = True
    settings.STRIPE_SECRET_KEY = ""
    settings.SITE_URL = "http://testserver"
    settings.CHECKOUT_REDIRECT_HOSTS = ["testserver", "localhost"]
    return settings


# --- balance, packs --------------------------------------------------------------------------


@pytest.mark.django_db
def test_balance_of_a_new_user_is_zero_and_low(user_client, settings):
    settings.CREDITS_LOW_THRESHOLD = 20

    response = user_client.get("/api/credits/balance")

    assert response.status_code == 200
    assert response.json() == {"balance": 0, "available": 0, "isLow": True, "lowThreshold": 20}
    assert not CreditAccount.objects.exists()  # reading never creates rows


@pytest.mark.django_db
def test_balance_with_a_bearer_key_reflects_holds(user, workspace, fund, settings):
    settings.CREDITS_LOW_THRESHOLD = 20
    fund(workspace, 50)
    credit_hold(workspace=workspace, amount=35)
    _key, plaintext = api_key_create(workspace=workspace, created_by=user, name="ci")
    client = APIClient()

    response = client.get("/api/credits/balance", HTTP_AUTHORIZATION=f"Bearer {plaintext}")

    assert response.json() == {"balance": 50, "available": 15, "isLow": True, "lowThreshold": 20}


@pytest.mark.django_db
def test_balance_needs_authentication():
    response = APIClient().get("/api/credits/balance")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.django_db
def test_packs_are_public_in_display_order(catalogue, django_assert_max_num_queries):
    client = APIClient()
    with django_assert_max_num_queries(1):
        response = client.get("/api/credits/packs", HTTP_AUTHORIZATION="Bearer sk_agentai_stale")

    assert response.status_code == 200
    assert response.json() == [
        {
            "id": "pack_100",
            "name": "Pack 100",
            "credits": 100,
            "price_minor": 1900,
            "currency": "eur",
            "price_dzd_minor": None,
            "price_per_credit": "0.19",
            "best_value": False,
        },
        {
            "id": "pack_500",
            "name": "Pack 500",
            "credits": 500,
            "price_minor": 7900,
            "currency": "eur",
            "price_dzd_minor": None,
            "price_per_credit": "0.158",
            "best_value": False,  # the stored flag is here, but 79 € / 500 is not the cheapest per credit
        },
        {
            "id": "pack_1000",
            "name": "Pack 1000",
            "credits": 1000,
            "price_minor": 13900,
            "currency": "eur",
            "price_dzd_minor": None,
            "price_per_credit": "0.139",
            "best_value": True,  # 0.139 € per credit, the lowest
        },
    ]


@pytest.mark.django_db
def test_packs_show_their_dzd_price_when_sold_through_chargily(catalogue):
    CreditPack.objects.filter(code="pack_500").update(price_dzd_minor=1_500_000)

    packs = {pack["id"]: pack for pack in APIClient().get("/api/credits/packs").json()}

    assert packs["pack_500"]["price_dzd_minor"] == 1_500_000
    assert packs["pack_100"]["price_dzd_minor"] is None


# --- transactions ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_transactions_are_the_workspaces_own_newest_first_and_cursor_paginated(
    catalogue, workspace, other_workspace, fund, user_client, django_assert_max_num_queries
):
    fund(workspace, 100)
    fund(other_workspace, 100)
    for n in range(5):
        credit_consume(workspace=workspace, endpoint="/api/ai/generate", idempotency_key=f"k{n}")

    with django_assert_max_num_queries(3):  # session user + page (+ nothing per row)
        first = user_client.get("/api/credits/transactions?limit=4")
    body = first.json()
    assert first.status_code == 200
    assert [row["balanceAfter"] for row in body["results"]] == [75, 80, 85, 90]
    assert body["results"][0]["kind"] == "consume" and body["results"][0]["amount"] == -5
    second = user_client.get(body["next"]).json()
    assert [row["balanceAfter"] for row in second["results"]] == [95, 100]
    assert second["next"] is None
    own_ids = set(LedgerEntry.objects.filter(workspace=workspace).values_list("id", flat=True))
    assert {row["id"] for row in body["results"] + second["results"]} == own_ids


@pytest.mark.django_db
def test_another_workspaces_transaction_is_a_404(workspace, other_workspace, fund, user_client):
    own = fund(workspace, 5)
    foreign = fund(other_workspace, 5)

    assert user_client.get(f"/api/credits/transactions/{own.pk}").json()["amount"] == 5
    response = user_client.get(f"/api/credits/transactions/{foreign.pk}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_forged_cursor_is_a_400(user_client):
    response = user_client.get("/api/credits/transactions?cursor=%%%garbage")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "cursor"


# --- check, consume --------------------------------------------------------------------------


@pytest.mark.django_db
def test_check_allows_when_covered(catalogue, workspace, fund, user_client):
    fund(workspace, 10)

    response = user_client.post("/api/credits/check", {"endpoint": "/api/ai/generate/hd"}, format="json")

    assert response.status_code == 200
    assert response.json() == {"allowed": True, "cost": 10, "balance": 10}
    assert CreditAccount.objects.get(workspace=workspace).balance == 10  # a check charges nothing


@pytest.mark.django_db
def test_check_and_consume_answer_402_with_upsell_fields(catalogue, workspace, fund, user_client, settings):
    settings.SITE_URL = "https://portal.example"
    fund(workspace, 3)

    for url, body in (
        ("/api/credits/check", {"endpoint": "/api/ai/generate"}),
        ("/api/credits/consume", {"endpoint": "/api/ai/generate", "idempotencyKey": "abc"}),
    ):
        response = user_client.post(url, body, format="json")
        assert response.status_code == 402
        error = response.json()["error"]
        assert error["code"] == "insufficient_credits"
        assert (error["balance"], error["available"], error["cost"]) == (3, 3, 5)
        assert error["buyUrl"] == "https://portal.example/credits/"
        assert [p["id"] for p in error["packs"]] == ["pack_100", "pack_500", "pack_1000"]
    assert CreditAccount.objects.get(workspace=workspace).balance == 3


@pytest.mark.django_db
def test_consume_then_replay(catalogue, workspace, fund, user_client):
    fund(workspace, 20)
    body = {"endpoint": "/api/3d/render-highres", "idempotencyKey": "render-42"}

    first = user_client.post("/api/credits/consume", body, format="json")
    replay = user_client.post("/api/credits/consume", body, format="json")

    assert first.status_code == replay.status_code == 200
    assert first.json() == {"charged": 8, "balanceAfter": 12, "replayed": False}
    assert replay.json() == {"charged": 8, "balanceAfter": 12, "replayed": True}
    assert CreditAccount.objects.get(workspace=workspace).balance == 12


@pytest.mark.django_db
def test_the_idempotency_key_header_replays_like_the_body_field(catalogue, workspace, fund, user_client):
    fund(workspace, 20)
    body = {"endpoint": "/api/3d/render-highres"}

    first = user_client.post("/api/credits/consume", body, format="json", HTTP_IDEMPOTENCY_KEY="render-7")
    replay = user_client.post("/api/credits/consume", {**body, "idempotencyKey": "render-7"}, format="json")

    assert first.status_code == replay.status_code == 200
    assert first.json()["replayed"] is False and replay.json()["replayed"] is True
    assert CreditAccount.objects.get(workspace=workspace).balance == 12


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("header", "body_key"),
    [("a b", None), ("render-1", "render-2"), ("x" * 101, None)],
)
def test_a_bad_or_conflicting_idempotency_header_is_a_400_that_charges_nothing(
    catalogue, workspace, fund, user_client, header, body_key
):
    fund(workspace, 20)
    body = {"endpoint": "/api/3d/render-highres"}
    if body_key:
        body["idempotencyKey"] = body_key

    response = user_client.post("/api/credits/consume", body, format="json", HTTP_IDEMPOTENCY_KEY=header)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "idempotencyKey"
    assert CreditAccount.objects.get(workspace=workspace).balance == 20


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "body", "param"),
    [
        ("/api/credits/check", {"endpoint": "/api/unknown"}, "endpoint"),
        ("/api/credits/consume", {"endpoint": "/api/unknown", "idempotencyKey": "k"}, "endpoint"),
        ("/api/credits/consume", {"endpoint": "/api/ai/generate"}, "idempotencyKey"),
        ("/api/credits/consume", {"endpoint": "/api/ai/generate", "idempotencyKey": "a b"}, "idempotencyKey"),
        ("/api/credits/check", {"endpoint": "/api/ai/generate", "units": -1}, "units"),
        ("/api/credits/check", {}, "endpoint"),
        ("/api/credits/check", ["not", "an", "object"], None),
    ],
)
def test_bad_input_is_a_400_in_the_error_shape(catalogue, workspace, fund, user_client, url, body, param):
    fund(workspace, 50)

    response = user_client.post(url, body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    if param:
        assert response.json()["error"]["param"] == param
    assert CreditAccount.objects.get(workspace=workspace).balance == 50


@pytest.mark.django_db
def test_malformed_json_is_a_400(user_client):
    response = user_client.generic("POST", "/api/credits/consume", "{nope", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


# --- buy -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_buy_opens_a_stripe_payment_checkout_with_inline_price(catalogue, workspace, user_client, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_credits"
    settings.STRIPE_API_BASE = ""
    settings.CHECKOUT_REDIRECT_HOSTS = ["app.example"]
    with responses.RequestsMock() as stripe_http:
        stripe_http.post(
            "https://api.stripe.com/v1/checkout/sessions",
            json={
                "id": "cs_test_buy",
                "object": "checkout.session",
                "url": "https://checkout.stripe.com/c/pay/cs_test_buy",
            },
        )
        response = user_client.post(
            "/api/credits/buy",
            {
                "packId": "pack_500",
                "successUrl": "https://app.example/ok",
                "cancelUrl": "https://app.example/no",
            },
            format="json",
        )
        sent = parse_qs(stripe_http.calls[0].request.body)

    assert response.status_code == 200
    assert response.json() == {
        "checkoutUrl": "https://checkout.stripe.com/c/pay/cs_test_buy",
        "sessionId": "cs_test_buy",
    }
    assert sent["mode"] == ["payment"]
    assert sent["line_items[0][price_data][unit_amount]"] == ["7900"]
    assert sent["line_items[0][price_data][currency]"] == ["eur"]
    assert sent["metadata[kind]"] == ["credit_pack"]
    assert sent["metadata[pack]"] == ["pack_500"]
    assert sent["metadata[workspace_id]"] == [str(workspace.pk)] and "metadata[user_id]" not in sent
    assert UpsellEvent.objects.filter(workspace=workspace, kind="click", pack__code="pack_500").exists()


@pytest.mark.django_db
def test_buy_uses_the_stripe_price_when_set(catalogue, user_client, settings):
    catalogue[0].stripe_price_id = "price_pack100"
    catalogue[0].save()
    settings.STRIPE_SECRET_KEY = "sk_test_credits"
    settings.STRIPE_API_BASE = ""
    settings.CHECKOUT_REDIRECT_HOSTS = ["app.example"]
    with responses.RequestsMock() as stripe_http:
        stripe_http.post(
            "https://api.stripe.com/v1/checkout/sessions",
            json={"id": "cs_1", "url": "https://checkout.stripe.com/x"},
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

    assert sent["line_items[0][price]"] == ["price_pack100"]
    assert "line_items[0][price_data][unit_amount]" not in sent


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"packId": "pack_9", "successUrl": "http://testserver/a", "cancelUrl": "http://testserver/b"},
            "packId",
        ),
        (
            {
                "packId": "pack_100",
                "successUrl": "https://evil.example/a",
                "cancelUrl": "http://testserver/b",
            },
            "successUrl",
        ),
        ({"packId": "pack_100", "successUrl": "not a url", "cancelUrl": "http://testserver/b"}, "successUrl"),
    ],
)
def test_buy_rejects_unknown_packs_and_foreign_redirects(
    catalogue, user_client, simulated_checkout, body, param
):
    response = user_client.post("/api/credits/buy", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


@pytest.mark.django_db
def test_buy_on_the_simulated_checkout_grants_the_pack(catalogue, user, user_client, simulated_checkout):
    """The local "done when": buy pack_500, pay on the simulated checkout, see 500 credits."""
    response = user_client.post(
        "/api/credits/buy",
        {
            "packId": "pack_500",
            "successUrl": "http://testserver/credits/?purchase=success",
            "cancelUrl": "http://testserver/credits/",
        },
        format="json",
    )
    checkout_url = response.json()["checkoutUrl"]

    paid = user_client.post(checkout_url.replace("http://testserver", ""), {"action": "pay"})

    assert paid.status_code == 302
    assert paid["Location"] == "http://testserver/credits/?purchase=success"
    assert user_client.get("/api/credits/balance").json()["balance"] == 500
    entry = json.loads(user_client.get("/api/credits/transactions").content)["results"][0]
    assert (entry["kind"], entry["amount"], entry["reference"]) == (
        "purchase",
        500,
        response.json()["sessionId"],
    )


@pytest.mark.django_db
def test_consume_hot_path_query_budget(catalogue, user, workspace, fund, django_assert_max_num_queries):
    """User, the creator's membership of the key's workspace, replay check, cost, savepoint, row
    lock, re-check under the lock, update, insert, release: the key itself comes from the shared
    cache after the first call."""
    fund(workspace, 50)
    _key, plaintext = api_key_create(workspace=workspace, created_by=user, name="hot")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    client.post(
        "/api/credits/consume", {"endpoint": "/api/ai/generate", "idempotencyKey": "warm"}, format="json"
    )

    with django_assert_max_num_queries(10):
        response = client.post(
            "/api/credits/consume", {"endpoint": "/api/ai/generate", "idempotencyKey": "hot"}, format="json"
        )

    assert response.status_code == 200
