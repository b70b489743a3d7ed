"""Subscription events, shaped like Stripe's own example objects (stripe/openapi fixtures3.json
``subscription`` and ``event``), trimmed to the fields Stripe always sends."""

import json
import time
import uuid
from datetime import UTC, datetime

import pytest

from billing import registry
from billing.gateways.stripe import webhook_signature_header
from organizations.models import Organization
from organizations.services import organization_subscription_event_handle, organization_subscription_sync

from ..factories import LinkedOrganizationFactory, OrganizationFactory

pytestmark = pytest.mark.django_db


def subscription_event(
    *,
    event_type="customer.subscription.updated",
    subscription_id="sub_1Pgc6rB7WZ01zgkWNy0Cn5nw",
    customer="cus_QXg1o8vcGmoR32",
    status="active",
    trial_end=None,
    metadata=None,
    created=1_900_000_000,
):
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2026-08-26.dahlia",
        "created": created,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": {
            "object": {
                "id": subscription_id,
                "object": "subscription",
                "customer": customer,
                "status": status,
                "trial_end": trial_end,
                "cancel_at_period_end": False,
                "collection_method": "charge_automatically",
                "currency": "usd",
                "metadata": metadata or {},
                "items": {
                    "object": "list",
                    "data": [{"id": "si_QXhVnC2h0Jczwc", "object": "subscription_item", "quantity": 1}],
                },
            },
            "previous_attributes": {"status": "trialing"},
        },
    }


def linked(**kwargs):
    return LinkedOrganizationFactory(
        stripe_customer_id="cus_QXg1o8vcGmoR32",
        stripe_subscription_id="sub_1Pgc6rB7WZ01zgkWNy0Cn5nw",
        status=Organization.Status.TRIAL,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("stripe_status", "expected"),
    [
        ("trialing", "trial"),
        ("active", "active"),
        ("past_due", "past_due"),
        ("unpaid", "past_due"),
        ("canceled", "canceled"),
    ],
)
def test_status_follows_the_subscription(stripe_status, expected):
    organization = linked()
    organization_subscription_event_handle(event=subscription_event(status=stripe_status))
    organization.refresh_from_db()
    assert organization.status == expected


def test_deleted_event_cancels_and_trial_end_is_kept_in_sync():
    organization = linked()
    organization_subscription_sync(event=subscription_event(status="trialing", trial_end=1_900_500_000))
    organization.refresh_from_db()
    assert organization.trial_end == datetime.fromtimestamp(1_900_500_000, tz=UTC)

    organization_subscription_sync(
        event=subscription_event(
            event_type="customer.subscription.deleted", status="canceled", created=1_900_000_100
        )
    )
    organization.refresh_from_db()
    assert organization.status == Organization.Status.CANCELED


def test_an_older_event_does_not_roll_the_status_back():
    organization = linked()
    organization_subscription_sync(event=subscription_event(status="past_due", created=1_900_000_200))
    organization_subscription_sync(event=subscription_event(status="active", created=1_900_000_100))
    organization.refresh_from_db()
    assert organization.status == Organization.Status.PAST_DUE


def test_subscriptions_of_users_are_ignored():
    organization = linked()
    result = organization_subscription_sync(
        event=subscription_event(
            subscription_id="sub_someone_else", customer="cus_someone", status="canceled"
        )
    )
    assert result is None
    organization.refresh_from_db()
    assert organization.status == Organization.Status.TRIAL


def test_created_event_before_link_finished_is_matched_by_metadata():
    organization = OrganizationFactory(stripe_customer_id="cus_QXg1o8vcGmoR32")
    organization_subscription_sync(
        event=subscription_event(
            event_type="customer.subscription.created",
            status="trialing",
            metadata={"organization_id": str(organization.pk)},
        )
    )
    organization.refresh_from_db()
    assert organization.stripe_subscription_id == "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw"
    assert organization.status == Organization.Status.TRIAL


def test_metadata_naming_an_organization_of_another_customer_is_ignored():
    organization = OrganizationFactory(stripe_customer_id="cus_other")
    result = organization_subscription_sync(
        event=subscription_event(metadata={"organization_id": str(organization.pk)})
    )
    assert result is None
    organization.refresh_from_db()
    assert organization.stripe_subscription_id is None


@pytest.mark.parametrize(
    "event", [{}, {"data": {}}, {"data": {"object": {"object": "invoice", "id": "in_1"}}}]
)
def test_other_objects_are_ignored(event):
    assert organization_subscription_sync(event=event) is None


@pytest.mark.parametrize(
    "event_type",
    ["customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted"],
)
def test_handler_is_registered_with_billing(event_type):
    assert organization_subscription_event_handle in registry.event_handlers_get(event_type)


def test_through_billing_webhook(client, settings):
    """End to end: a signed event posted to billing's webhook reaches our handler."""
    settings.STRIPE_WEBHOOK_SECRET = "whsec_organizations_test"
    organization = linked()
    payload = json.dumps(subscription_event(status="past_due", created=int(time.time()))).encode()
    signature = webhook_signature_header(payload=payload, secret=settings.STRIPE_WEBHOOK_SECRET)

    response = client.post(
        "/api/billing/webhook", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature
    )

    assert response.status_code == 200, response.content
    organization.refresh_from_db()
    assert organization.status == Organization.Status.PAST_DUE
