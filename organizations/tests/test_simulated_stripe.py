"""Offline (DEBUG, no STRIPE_SECRET_KEY): the operator's VaultAI flow runs end to end against the
simulated Stripe — link in the admin (customer, trialing subscription, its
``customer.subscription.created`` through the webhook pipeline), then reports become meter
events recorded locally, once each."""

import json
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.gateways.stripe_simulated import meter_event_create, meter_events_list
from billing.models import StripeEvent
from organizations.models import Organization, UsageReport

from .conftest import TOKEN
from .factories import OrganizationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def offline(settings, billing_tokens):
    settings.DEBUG = True
    settings.STRIPE_SECRET_KEY = ""
    settings.SIMULATED_CHECKOUT_ENABLED = True
    settings.STRIPE_PRICE_VAULTAI_MANAGED_CLOUD = ""
    settings.STRIPE_PRICE_VAULTAI_SELF_HOSTED = ""
    settings.STRIPE_WEBHOOK_SECRET = "whsec_local_simulated_checkout"
    return settings


def _report(client, org_id, captured, *, at=None) -> dict:
    body = {
        "organization_id": str(org_id),
        "organization_name": "Acme",
        "instance_url": "acme.vaultai.eu",
        "user_count": 12,
        "timestamp": (at or timezone.now()).isoformat(),
    }
    with captured(execute=True):
        response = client.post(
            "/api/usage-report",
            data=json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
        )
    assert response.status_code == 200, response.content
    return response.json()


def test_link_in_the_admin_then_reports_become_meter_events(
    client, staff_client, offline, django_capture_on_commit_callbacks
):
    org_id = uuid.uuid4()
    earlier = _report(
        client, org_id, django_capture_on_commit_callbacks, at=timezone.now() - timedelta(days=1)
    )
    assert earlier["organization_status"] == "pending"

    url = reverse("admin:organizations_organization_link", args=[org_id])
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            url,
            {
                "admin_email": "billing@acme.eu",
                "deployment_type": "on-premise",
                "plan_type": "self-hosted",
                "trial_days": "14",
                "price_id": "",
                "backfill": "on",
            },
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    organization = Organization.objects.get(pk=org_id)
    assert organization.stripe_customer_id.startswith("cus_sim_")
    assert organization.stripe_subscription_id.startswith("sub_sim_")
    assert organization.stripe_price_id == "price_sim_vaultai_self-hosted"
    assert organization.status == Organization.Status.TRIAL
    assert organization.trial_end is not None
    assert timedelta(days=13) < organization.trial_end - timezone.now() <= timedelta(days=14)
    # Stripe's webhook for the new subscription went through the one pipeline and was applied.
    created = StripeEvent.objects.get(type="customer.subscription.created")
    assert created.status == StripeEvent.Status.PROCESSED
    assert organization.subscription_event_at is not None

    # The backfilled report and a new one: one meter event each, recorded locally.
    now = _report(client, org_id, django_capture_on_commit_callbacks)
    reports = UsageReport.objects.filter(organization=organization)
    assert set(reports.values_list("billing_status", flat=True)) == {UsageReport.BillingStatus.SENT}
    events = meter_events_list(customer_id=organization.stripe_customer_id)
    assert sorted(e["identifier"] for e in events) == sorted(
        f"usage-report-{r}" for r in (earlier["report_id"], now["report_id"])
    )
    assert {e["payload"]["value"] for e in events} == {"12"}


def test_meter_events_are_deduplicated_on_the_identifier(offline):
    customer, identifier = f"cus_sim_{uuid.uuid4().hex}", f"usage-report-{uuid.uuid4()}"
    for _ in range(2):
        meter_event_create(
            event_name="vaultai_active_users",
            customer_id=customer,
            value=3,
            identifier=identifier,
            timestamp=1,
        )
    assert [e["identifier"] for e in meter_events_list(customer_id=customer)] == [identifier]


def test_with_debug_off_linking_still_needs_stripe(staff_client, offline):
    offline.DEBUG = False
    organization = OrganizationFactory()
    url = reverse("admin:organizations_organization_link", args=[organization.pk])
    response = staff_client.post(
        url,
        {
            "admin_email": "ops@prod.eu",
            "deployment_type": "on-premise",
            "plan_type": "self-hosted",
            "trial_days": "14",
            "price_id": "price_real",
        },
    )
    assert response.status_code == 200  # the form again, with Stripe's refusal on it
    assert "Stripe is not configured" in response.content.decode()
    organization.refresh_from_db()
    assert organization.stripe_customer_id is None and not StripeEvent.objects.exists()
