import json
from urllib.parse import parse_qs

import pytest
import responses

from .factories import StaffUserFactory

STRIPE = "https://api.stripe.com"
TOKEN = "test-billing-token-current"
OLD_TOKEN = "test-billing-token-previous"


@pytest.fixture
def billing_tokens(settings):
    settings.BILLING_API_TOKEN = [TOKEN, OLD_TOKEN]
    return settings.BILLING_API_TOKEN


@pytest.fixture
def stripe_settings(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_organizations"
    settings.STRIPE_API_BASE = ""
    settings.STRIPE_METER_EVENT_NAME = "vaultai_active_users"
    settings.STRIPE_PRICE_VAULTAI_MANAGED_CLOUD = "price_managed"
    settings.STRIPE_PRICE_VAULTAI_SELF_HOSTED = "price_selfhosted"
    return settings


@pytest.fixture
def stripe_http(stripe_settings):
    """Stripe stubbed at the HTTP boundary: the SDK's requests go to ``responses``."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def form(call) -> dict:
    """The form-encoded body the Stripe SDK sent, flattened (``items[0][price]`` keys)."""
    return {key: values[0] for key, values in parse_qs(call.request.body).items()}


def stripe_json(status: int, body: dict, **headers) -> dict:
    return {
        "status": status,
        "body": json.dumps(body),
        "content_type": "application/json",
        "headers": {"Request-Id": "req_test", **headers},
    }


def stripe_error(status: int, message: str, *, retry: bool = False) -> dict:
    # "Stripe-Should-Retry: false" keeps the SDK from retrying (and sleeping) inside the test.
    return stripe_json(
        status,
        {"error": {"type": "invalid_request_error" if status < 500 else "api_error", "message": message}},
        **{"Stripe-Should-Retry": "true" if retry else "false"},
    )


@pytest.fixture
def staff_client(client, db):
    user = StaffUserFactory()
    client.force_login(user)
    return client
