"""Regression tests for "any VaultAI instance can write another organization's billing": over
HTTP, as an instance holding only the shared token would try it."""

import json
import uuid
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from organizations.models import Organization, UsageReport
from organizations.services import organization_ingestion_token_issue, organization_ingestion_token_revoke

from .conftest import STRIPE, TOKEN, form, stripe_json
from .factories import LinkedOrganizationFactory, OrganizationFactory

URL = "/api/usage-report"
pytestmark = pytest.mark.django_db


def report(client, organization_id, token=TOKEN, **overrides):
    body = {
        "organization_id": str(organization_id),
        "organization_name": "Victim GmbH",
        "instance_url": "victim.vaultai.eu",
        "user_count": 12,
        "timestamp": timezone.now().isoformat(),
        **overrides,
    }
    return client.post(
        URL, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


@pytest.fixture
def victim():
    """A linked organization that reported 10 users yesterday."""
    return LinkedOrganizationFactory(
        name="Victim GmbH",
        instance_url="victim.vaultai.eu",
        latest_user_count=10,
        last_report_at=timezone.now() - timedelta(days=1),
    )


@pytest.fixture
def own_token(victim, secret_registry):
    token = organization_ingestion_token_issue(organization=victim)
    secret_registry.add(token)  # the suite fails if it ever reaches a log record
    return token


def assert_error_shape(response, status, code):
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code", "param"}
    assert error["code"] == code and error["param"] is None
    return error


def test_backdated_hijack_rename_is_queued_not_applied(client, billing_tokens, victim, staff_client):
    response = report(
        client,
        victim.pk,
        organization_name="Pay us at evil.example.net",
        instance_url="evil.example.net",
        timestamp=(timezone.now() - timedelta(days=20)).isoformat(),
    )

    assert response.status_code == 200
    victim.refresh_from_db()
    assert (victim.name, victim.instance_url) == ("Victim GmbH", "victim.vaultai.eu")
    # A backdated report proposes nothing either; a current one is queued for the operator.
    assert not victim.has_pending_identity
    report(client, victim.pk, organization_name="Pay us at evil.example.net", instance_url="evil.example.net")
    victim.refresh_from_db()
    assert victim.name == "Victim GmbH"
    assert victim.pending_name == "Pay us at evil.example.net"
    listing = staff_client.get(
        reverse("admin:organizations_organization_changelist"), {"identity_change": "pending"}
    )
    assert "name/URL change pending" in listing.content.decode()


def test_shared_token_is_refused_once_the_organization_has_its_own(client, billing_tokens, victim, own_token):
    response = report(client, victim.pk, user_count=11)

    error = assert_error_shape(response, 403, "forbidden")
    assert error["type"] == "permission_error"
    assert own_token not in response.content.decode() and TOKEN not in response.content.decode()
    assert not UsageReport.objects.exists()

    accepted = report(client, victim.pk, token=own_token, user_count=11)
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["organization_status"] == "active"


def test_an_organizations_token_cannot_report_for_another(client, billing_tokens, victim, own_token):
    other = OrganizationFactory()

    assert_error_shape(report(client, other.pk, token=own_token), 403, "forbidden")
    assert_error_shape(report(client, uuid.uuid4(), token=own_token), 403, "forbidden")
    assert Organization.objects.count() == 2  # no organization created with it
    assert not UsageReport.objects.exists()


def test_a_wrong_or_revoked_own_token_is_401(client, billing_tokens, victim, own_token):
    assert_error_shape(
        report(client, victim.pk, token=own_token[:-1] + ("B" if own_token.endswith("A") else "A")),
        401,
        "invalid_api_key",
    )
    organization_ingestion_token_revoke(organization=victim)
    assert_error_shape(report(client, victim.pk, token=own_token), 401, "invalid_api_key")
    assert report(client, victim.pk).status_code == 200  # the shared token works again


def test_shared_token_still_works_for_organizations_without_their_own(
    client, billing_tokens, victim, own_token, django_capture_on_commit_callbacks
):
    new_instance = uuid.uuid4()
    created = report(client, new_instance, organization_name="Fresh", instance_url="fresh.vaultai.eu")
    assert created.status_code == 200
    assert created.json()["organization_status"] == "pending"
    assert Organization.objects.get(pk=new_instance).name == "Fresh"

    linked_without_token = LinkedOrganizationFactory()
    with django_capture_on_commit_callbacks() as callbacks:
        assert report(client, linked_without_token.pk).status_code == 200
    assert len(callbacks) == 1  # billed as before


def test_refused_reports_do_not_use_up_the_instances_rate_budget(
    client, billing_tokens, victim, own_token, settings
):
    settings.ORG_USAGE_REPORT_RATE = "2/h"
    with time_machine.travel(timezone.now(), tick=False):
        for _ in range(5):
            assert report(client, victim.pk).status_code in (403, 429)
        assert report(client, victim.pk, token=own_token).status_code == 200


def test_a_jump_is_held_then_released_into_one_meter_event(
    client, billing_tokens, victim, staff_client, stripe_http, django_capture_on_commit_callbacks
):
    meter = stripe_http.post(f"{STRIPE}/v1/billing/meter_events", **stripe_json(200, {"object": "x"}))

    with django_capture_on_commit_callbacks(execute=True):
        response = report(client, victim.pk, user_count=5000)

    assert response.status_code == 200
    body = response.json()
    assert body["held_for_review"] is True
    held = UsageReport.objects.get(pk=body["report_id"])
    assert held.billing_status == UsageReport.BillingStatus.HELD
    assert meter.call_count == 0
    victim.refresh_from_db()
    assert victim.latest_user_count == 10

    changelist = reverse("admin:organizations_usagereport_changelist")
    for _ in range(2):  # releasing twice bills once
        with django_capture_on_commit_callbacks(execute=True):
            released = staff_client.post(
                changelist, {"action": "release_held", "_selected_action": [str(held.pk)]}, follow=True
            )
        assert released.status_code == 200

    assert meter.call_count == 1
    held.refresh_from_db()
    assert held.billing_status == UsageReport.BillingStatus.SENT
    assert held.meter_identifier == f"usage-report-{held.pk}"
    assert form(meter.calls[0])["payload[value]"] == "5000"
