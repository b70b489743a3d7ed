import time

import pytest
import responses
from django.core import mail

import billing.tests.stripe_events as se
from accounts.services import api_key_create
from billing.models import CheckoutSession, StripeEvent, Subscription

from .factories import SubscriptionFactory, UserFactory, member_add, team_workspace

pytestmark = pytest.mark.django_db

WEBHOOK = "/api/billing/webhook"


def _post_webhook(client, payload: bytes, signature: str | None):
    headers = {"HTTP_STRIPE_SIGNATURE": signature} if signature is not None else {}
    return client.post(WEBHOOK, data=payload, content_type="application/json", **headers)


def _error_code(response) -> str:
    return response.json()["error"]["code"]


# --- webhook ---------------------------------------------------------------------------------


def _checkout_event(workspace):
    return se.event("checkout.session.completed", se.checkout_session(workspace=workspace))


def test_webhook_valid_signature_activates(client, webhook_settings, django_capture_on_commit_callbacks):
    workspace = UserFactory().personal_workspace
    payload, signature = se.signed(_checkout_event(workspace))
    with django_capture_on_commit_callbacks(execute=True):
        response = _post_webhook(client, payload, signature)
    assert response.status_code == 200
    assert response.json() == {"received": True, "status": "processed", "duplicate": False}
    assert Subscription.objects.get(workspace=workspace).status == "active"


@pytest.mark.parametrize(
    "case",
    ["wrong_secret", "stale", "future", "body_altered", "missing_header", "garbage_header", "not_an_event"],
)
def test_webhook_signature_matrix_answers_400_and_stores_nothing(case, client, webhook_settings):
    evt = _checkout_event(UserFactory().personal_workspace)
    now = int(time.time())
    payload, signature = se.signed(evt)
    if case == "wrong_secret":
        payload, signature = se.signed(evt, secret="whsec_someone_else")
    elif case == "stale":
        payload, signature = se.signed(evt, timestamp=now - 301)
    elif case == "future":
        payload, signature = se.signed(evt, timestamp=now + 301)
    elif case == "body_altered":
        payload = payload.replace(b'"business"', b'"scale"')
    elif case == "missing_header":
        signature = None
    elif case == "garbage_header":
        signature = "t=abc,v1=zzz"
    elif case == "not_an_event":
        payload, signature = se.signed([1, 2, 3])
    response = _post_webhook(client, payload, signature)
    assert response.status_code == 400
    assert _error_code(response) == "invalid_signature"
    assert not StripeEvent.objects.exists()
    assert not Subscription.objects.exists()


def test_webhook_accepts_timestamps_inside_the_window(client, webhook_settings):
    payload, signature = se.signed(
        se.event("customer.created", {"id": "cus_1"}), timestamp=int(time.time()) - 290
    )
    assert _post_webhook(client, payload, signature).status_code == 200


def test_webhook_duplicate_answers_200_and_does_nothing(
    client, webhook_settings, django_capture_on_commit_callbacks
):
    payload, signature = se.signed(_checkout_event(UserFactory().personal_workspace))
    with django_capture_on_commit_callbacks(execute=True):
        first = _post_webhook(client, payload, signature)
        second = _post_webhook(client, payload, signature)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json() == {"received": True, "duplicate": True}
    assert Subscription.objects.count() == 1
    assert len(mail.outbox) == 1


def test_webhook_unknown_type_is_200(client, webhook_settings):
    payload, signature = se.signed(se.event("radar.early_fraud_warning.created", {"id": "issfr_1"}))
    response = _post_webhook(client, payload, signature)
    assert response.status_code == 200
    assert StripeEvent.objects.get().status == StripeEvent.Status.IGNORED


def test_webhook_processing_failure_is_stored_and_answers_503_for_a_retry(client, webhook_settings):
    workspace = UserFactory().personal_workspace
    evt = se.event("checkout.session.completed", se.checkout_session(workspace=workspace, plan_code="gone"))
    payload, signature = se.signed(evt)
    response = _post_webhook(client, payload, signature)
    assert response.status_code == 503
    assert _error_code(response) == "service_unavailable"
    assert "gone" not in response.content.decode()  # internals stay in the event row
    row = StripeEvent.objects.get()
    assert row.status == StripeEvent.Status.FAILED
    # Stripe's retry runs it again (and fails again, recorded, not lost)
    assert _post_webhook(client, payload, signature).status_code == 503
    row.refresh_from_db()
    assert row.attempts == 2


# --- checkout --------------------------------------------------------------------------------


def test_checkout_needs_authentication(api_client):
    response = api_client.post("/api/billing/checkout", {"planId": "business"}, format="json")
    assert response.status_code == 401
    assert _error_code(response) == "invalid_api_key"


def test_checkout_simulated(api_client, simulated_settings):
    user = UserFactory()
    api_client.force_authenticate(user)
    response = api_client.post(
        "/api/billing/checkout",
        {"planId": "business", "successUrl": "http://localhost/ok", "cancelUrl": "http://localhost/no"},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"checkoutUrl", "sessionId"}
    assert body["checkoutUrl"].endswith(f"/billing/simulated-checkout/{body['sessionId']}/")


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        (
            {
                "planId": "business",
                "successUrl": "https://evil.example.com/",
                "cancelUrl": "http://localhost/",
            },
            "successUrl",
        ),
        (
            {
                "planId": "business",
                "successUrl": "http://localhost/",
                "cancelUrl": "https://evil.example.com/",
            },
            "cancelUrl",
        ),
        ({"planId": "free", "successUrl": "http://localhost/", "cancelUrl": "http://localhost/"}, "planId"),
        ({"planId": "nope", "successUrl": "http://localhost/", "cancelUrl": "http://localhost/"}, "planId"),
        ({"successUrl": "http://localhost/", "cancelUrl": "http://localhost/"}, "planId"),
        ({"planId": ["x"], "successUrl": "http://localhost/", "cancelUrl": "http://localhost/"}, "planId"),
    ],
)
def test_checkout_bad_input_is_400(payload, param, api_client, simulated_settings):
    api_client.force_authenticate(UserFactory())
    response = api_client.post("/api/billing/checkout", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_checkout_malformed_json_is_400(api_client):
    api_client.force_authenticate(UserFactory())
    response = api_client.post("/api/billing/checkout", data="{nope", content_type="application/json")
    assert response.status_code == 400


# --- subscription, plans, portal -------------------------------------------------------------


def test_subscription_of_a_free_workspace(api_client):
    api_client.force_authenticate(UserFactory())
    body = api_client.get("/api/billing/subscription").json()
    assert body["status"] == "active"
    assert body["plan"]["code"] == "free"
    assert (body["currentPeriodEnd"], body["cancelAtPeriodEnd"]) == (None, False)


def test_subscription_of_a_paying_workspace(api_client):
    sub = SubscriptionFactory(status="past_due", cancel_at_period_end=True)
    api_client.force_authenticate(sub.workspace.personal_owner)
    body = api_client.get("/api/billing/subscription").json()
    assert body["plan"]["code"] == "business"
    assert body["plan"]["quotas"] == [
        {"meter": "emails", "period": "month", "limit": 10_000},
        {"meter": "llm_tokens", "period": "month", "limit": 10_000_000},
        {"meter": "requests", "period": "day", "limit": None},
    ]
    assert body["status"] == "past_due"
    assert body["cancelAtPeriodEnd"] is True
    assert body["currentPeriodEnd"].endswith("Z")


def test_subscription_works_with_a_proxy_key(api_client):
    sub = SubscriptionFactory()
    _, plaintext = api_key_create(workspace=sub.workspace, created_by=sub.workspace.personal_owner, name="k")
    response = api_client.get("/api/billing/subscription", HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert response.json()["plan"]["code"] == "business"


def test_plans_are_public_with_the_documented_shape(api_client, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):
        response = api_client.get("/api/billing/plans", HTTP_AUTHORIZATION="Bearer stale")
    assert response.status_code == 200
    plans = response.json()
    assert [p["code"] for p in plans] == ["free", "student", "pro", "discovery", "business", "scale"]
    assert plans[1] == {
        "code": "student",
        "name": "Student",
        "price_minor": 1590,
        "currency": "eur",
        "interval": "month",
        "rate_limit_per_minute": 10,
        "quotas": [
            {"meter": "emails", "period": "month", "limit": 0},
            {"meter": "llm_tokens", "period": "month", "limit": 2_000_000},
            {"meter": "requests", "period": "day", "limit": 200},
        ],
    }


@responses.activate
def test_portal_returns_the_stripe_url(api_client, stripe_settings):
    sub = SubscriptionFactory(stripe_customer_id="cus_portal")
    responses.post(
        "https://api.stripe.com/v1/billing_portal/sessions",
        json={
            "id": "bps_1",
            "object": "billing_portal.session",
            "url": "https://billing.stripe.com/p/session/x",
        },
    )
    api_client.force_authenticate(sub.workspace.personal_owner)
    response = api_client.post(
        "/api/billing/portal", {"returnUrl": "http://localhost/dashboard/"}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == {"url": "https://billing.stripe.com/p/session/x"}
    sent = responses.calls[0].request.body
    assert "customer=cus_portal" in sent
    assert "return_url=http%3A%2F%2Flocalhost%2Fdashboard%2F" in sent


def test_portal_without_billing_account_is_400(api_client, stripe_settings):
    api_client.force_authenticate(UserFactory())
    response = api_client.post("/api/billing/portal", {}, format="json")
    assert response.status_code == 400


def test_portal_rejects_foreign_return_url(api_client, stripe_settings):
    sub = SubscriptionFactory()
    api_client.force_authenticate(sub.workspace.personal_owner)
    response = api_client.post(
        "/api/billing/portal", {"returnUrl": "https://evil.example.com/"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "returnUrl"


def test_webhook_refuses_the_public_local_secret_outside_debug(client, settings):
    settings.DEBUG = False
    settings.STRIPE_WEBHOOK_SECRET = "whsec_local_simulated_checkout"
    payload, signature = se.signed(
        _checkout_event(UserFactory().personal_workspace), secret="whsec_local_simulated_checkout"
    )
    response = _post_webhook(client, payload, signature)
    assert response.status_code == 503
    assert not StripeEvent.objects.exists()


# --- the workspace and its roles ---------------------------------------------------------------

CHECKOUT = {"planId": "business", "successUrl": "http://localhost/ok", "cancelUrl": "http://localhost/no"}


def test_a_billing_member_opens_a_checkout_for_the_team_workspace(api_client, simulated_settings):
    team = team_workspace(name="Acme")
    member = member_add(team, role="billing")
    api_client.force_authenticate(member)
    response = api_client.post(
        "/api/billing/checkout", CHECKOUT, format="json", HTTP_X_WORKSPACE=str(team.pk)
    )
    assert response.status_code == 200
    checkout = CheckoutSession.objects.get(checkout_reference=response.json()["sessionId"])
    assert (checkout.workspace_id, checkout.created_by_id) == (team.pk, member.pk)
    assert checkout.metadata["workspace_id"] == str(team.pk)
    assert "user_id" not in checkout.metadata


@pytest.mark.parametrize(
    ("method", "path", "action_roles"),
    [
        ("post", "/api/billing/checkout", ["owner", "admin", "billing"]),
        ("post", "/api/billing/portal", ["owner", "admin", "billing"]),
        ("get", "/api/billing/subscription", ["owner", "admin", "billing"]),
        ("post", "/payment/subscribe/student", ["owner", "admin", "billing"]),
        ("get", "/payment/subscription/status", ["owner", "admin", "billing"]),
    ],
)
def test_a_developer_gets_403_with_the_roles_that_may(
    method, path, action_roles, api_client, simulated_settings
):
    team = team_workspace()
    api_client.force_authenticate(member_add(team, role="developer"))
    response = getattr(api_client, method)(path, CHECKOUT, format="json", HTTP_X_WORKSPACE=str(team.pk))
    assert response.status_code == 403
    error = response.json()["error"]
    assert (error["code"], error["required_role"]) == ("forbidden", action_roles)
    assert not CheckoutSession.objects.exists()


def test_a_developers_own_personal_workspace_is_theirs_to_pay_for(api_client, simulated_settings):
    """The role is per workspace: a developer of a team owns their personal workspace."""
    developer = member_add(team_workspace(), role="developer")
    api_client.force_authenticate(developer)
    assert api_client.post("/api/billing/checkout", CHECKOUT, format="json").status_code == 200
    assert CheckoutSession.objects.get().workspace_id == developer.personal_workspace.pk


def test_a_workspace_the_caller_is_not_in_is_404(api_client, simulated_settings):
    stranger = team_workspace()
    SubscriptionFactory(workspace=stranger)
    api_client.force_authenticate(UserFactory())
    for response in (
        api_client.get("/api/billing/subscription", HTTP_X_WORKSPACE=str(stranger.pk)),
        api_client.post("/api/billing/checkout", CHECKOUT, format="json", HTTP_X_WORKSPACE=str(stranger.pk)),
    ):
        assert response.status_code == 404
        assert _error_code(response) == "not_found"
    assert not CheckoutSession.objects.exists()


def test_the_subscription_read_is_the_workspaces_for_every_member_who_may_read_billing(api_client):
    team = team_workspace()
    SubscriptionFactory(workspace=team)
    member = member_add(team, role="billing")
    api_client.force_authenticate(member)
    assert api_client.get("/api/billing/subscription").json()["plan"]["code"] == "free"  # personal
    team_view = api_client.get("/api/billing/subscription", HTTP_X_WORKSPACE=str(team.pk)).json()
    assert team_view["plan"]["code"] == "business"


def test_a_proxy_key_reads_its_own_workspaces_subscription_with_its_creators_role(api_client):
    team = team_workspace()
    SubscriptionFactory(workspace=team)
    developer = member_add(team, role="developer")
    admin = member_add(team, role="admin")
    _, developer_key = api_key_create(workspace=team, created_by=developer, name="dev")
    _, admin_key = api_key_create(workspace=team, created_by=admin, name="admin")
    refused = api_client.get("/api/billing/subscription", HTTP_AUTHORIZATION=f"Bearer {developer_key}")
    assert refused.status_code == 403
    allowed = api_client.get("/api/billing/subscription", HTTP_AUTHORIZATION=f"Bearer {admin_key}")
    assert allowed.json()["plan"]["code"] == "business"
