import json
from urllib.parse import parse_qs

import pytest
import responses

from billing.models import CheckoutSession, Plan
from billing.services import checkout_redirect_url_validate, plan_checkout_start
from core.exceptions import ApiError

from ..factories import SubscriptionFactory, UserFactory, member_add, team_workspace

pytestmark = pytest.mark.django_db

OK = "http://localhost/billing/success/"
STRIPE_SESSIONS = "https://api.stripe.com/v1/checkout/sessions"


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/",
        "//evil.example.com/x",
        "javascript:alert(1)",
        "ftp://localhost/x",
        "http://localhost@evil.example.com/",
        "http://evil.example.com\\@localhost/",
        "http://localhost.evil.example.com/",
        "http://user:pw@localhost/",
        "http://localhost:99999/",
        "",
        "   ",
    ],
)
def test_open_redirects_are_rejected(url):
    with pytest.raises(ApiError) as exc_info:
        checkout_redirect_url_validate(url=url, param="successUrl")
    assert (exc_info.value.status_code, exc_info.value.param) == (400, "successUrl")


def test_allowed_hosts_and_subdomain_wildcards(settings):
    settings.CHECKOUT_REDIRECT_HOSTS = ["localhost", ".example.org"]
    for url in ("http://localhost:8000/ok?x=1", "https://app.example.org/done", "https://LOCALHOST/"):
        assert checkout_redirect_url_validate(url=url, param="p") == url


@pytest.mark.parametrize("code", ["free", "nope", "", "pro-inactive"])
def test_unknown_inactive_or_free_plan_is_400(code, simulated_settings):
    Plan.objects.filter(code="pro").update(code="pro-inactive", is_active=False)
    with pytest.raises(ApiError) as exc_info:
        plan_checkout_start(
            workspace=UserFactory().personal_workspace, plan_code=code, success_url=OK, cancel_url=OK
        )
    assert (exc_info.value.status_code, exc_info.value.param) == (400, "planId")


def test_an_already_subscribed_workspace_is_sent_to_the_portal(simulated_settings):
    sub = SubscriptionFactory()
    with pytest.raises(ApiError) as exc_info:
        plan_checkout_start(workspace=sub.workspace, plan_code="scale", success_url=OK, cancel_url=OK)
    assert exc_info.value.status_code == 409


def test_no_stripe_and_no_debug_means_no_payments(settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.DEBUG = False
    with pytest.raises(ApiError) as exc_info:
        plan_checkout_start(
            workspace=UserFactory().personal_workspace, plan_code="business", success_url=OK, cancel_url=OK
        )
    assert exc_info.value.status_code == 503
    assert not CheckoutSession.objects.exists()


def test_simulated_checkout_returns_a_local_unguessable_url(simulated_settings):
    user = UserFactory()
    workspace = user.personal_workspace
    result = plan_checkout_start(
        workspace=workspace, actor=user, plan_code="business", success_url=OK, cancel_url=OK
    )
    checkout = CheckoutSession.objects.get(workspace=workspace)
    assert result["session_id"] == checkout.checkout_reference
    assert len(result["session_id"]) >= 48
    assert result["checkout_url"] == f"http://testserver/billing/simulated-checkout/{result['session_id']}/"
    assert (checkout.amount_minor, checkout.currency, checkout.is_simulated) == (9900, "eur", True)
    assert checkout.metadata == {"plan_code": "business", "kind": "plan", "workspace_id": str(workspace.pk)}
    assert checkout.created_by == user


@responses.activate
def test_stripe_checkout_sends_inline_price_data_and_an_idempotency_key(stripe_settings):
    user = UserFactory()
    workspace = user.personal_workspace
    responses.post(
        STRIPE_SESSIONS,
        json={
            "id": "cs_test_abc",
            "object": "checkout.session",
            "url": "https://checkout.stripe.com/c/pay/cs_test_abc",
        },
    )
    result = plan_checkout_start(workspace=workspace, plan_code="business", success_url=OK, cancel_url=OK)

    assert result == {
        "checkout_url": "https://checkout.stripe.com/c/pay/cs_test_abc",
        "session_id": "cs_test_abc",
    }
    request = responses.calls[0].request
    checkout = CheckoutSession.objects.get(checkout_reference="cs_test_abc")
    assert request.headers["Idempotency-Key"] == f"checkout-session:{checkout.pk}"
    assert request.headers["Stripe-Version"] == stripe_settings.STRIPE_API_VERSION
    sent = parse_qs(request.body)
    assert sent["mode"] == ["subscription"]
    assert sent["line_items[0][price_data][unit_amount]"] == ["9900"]
    assert sent["line_items[0][price_data][currency]"] == ["eur"]
    assert sent["line_items[0][price_data][recurring][interval]"] == ["month"]
    assert sent["metadata[kind]"] == ["plan"]
    assert sent["metadata[plan_code]"] == ["business"]
    assert sent["subscription_data[metadata][workspace_id]"] == [str(workspace.pk)]
    assert sent["metadata[workspace_id]"] == [str(workspace.pk)]
    assert sent["client_reference_id"] == [str(workspace.pk)]
    assert not any("user_id" in key for key in sent)
    assert sent["customer_email"] == [user.email]  # no actor given: the workspace's billing contact
    assert sent["success_url"] == [OK]


@responses.activate
def test_stripe_checkout_uses_the_plan_price_id_when_set(stripe_settings):
    Plan.objects.filter(code="pro").update(stripe_price_id="price_pro_monthly")
    responses.post(STRIPE_SESSIONS, json={"id": "cs_test_pro", "url": "https://checkout.stripe.com/x"})
    plan_checkout_start(
        workspace=UserFactory().personal_workspace, plan_code="pro", success_url=OK, cancel_url=OK
    )
    sent = parse_qs(responses.calls[0].request.body)
    assert sent["line_items[0][price]"] == ["price_pro_monthly"]
    assert not any(key.startswith("line_items[0][price_data]") for key in sent)


@responses.activate
def test_stripe_error_becomes_a_502_without_secrets(stripe_settings):
    responses.post(
        STRIPE_SESSIONS,
        status=400,
        json={"error": {"type": "invalid_request_error", "message": "No such price: 'price_x'"}},
    )
    with pytest.raises(ApiError) as exc_info:
        plan_checkout_start(
            workspace=UserFactory().personal_workspace, plan_code="business", success_url=OK, cancel_url=OK
        )
    assert exc_info.value.status_code == 502
    assert "sk_test" not in json.dumps(exc_info.value.as_dict())
    assert CheckoutSession.objects.get().status == CheckoutSession.Status.CANCELED


@responses.activate
def test_a_team_checkout_reuses_the_workspaces_stripe_customer_and_emails_the_member_who_opened_it(
    stripe_settings,
):
    team = team_workspace()
    SubscriptionFactory(workspace=team, stripe_customer_id="cus_team", status="canceled")
    member = member_add(team, role="billing")
    responses.post(STRIPE_SESSIONS, json={"id": "cs_test_team", "url": "https://checkout.stripe.com/x"})
    plan_checkout_start(workspace=team, actor=member, plan_code="business", success_url=OK, cancel_url=OK)
    sent = parse_qs(responses.calls[0].request.body)
    assert sent["customer"] == ["cus_team"]  # one Stripe customer per workspace
    assert "customer_email" not in sent
    responses.calls.reset()

    fresh = team_workspace()
    opener = member_add(fresh, role="admin")
    responses.post(STRIPE_SESSIONS, json={"id": "cs_test_fresh", "url": "https://checkout.stripe.com/y"})
    plan_checkout_start(workspace=fresh, actor=opener, plan_code="business", success_url=OK, cancel_url=OK)
    assert parse_qs(responses.calls[0].request.body)["customer_email"] == [opener.email]
