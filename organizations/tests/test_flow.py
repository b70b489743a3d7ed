"""The issue's "done when": three instances report, appear pending, one is linked, and its
next report becomes exactly one meter event."""

import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from organizations.models import UsageReport

from .conftest import STRIPE, TOKEN, form, stripe_json


@pytest.mark.django_db
def test_three_instances_then_link_one_then_one_meter_event(
    client, staff_client, billing_tokens, stripe_http, django_capture_on_commit_callbacks
):
    instances = [uuid.uuid4() for _ in range(3)]
    yesterday = (timezone.now() - timedelta(days=1)).isoformat()

    def report(org_id, name, timestamp):
        body = {
            "organization_id": str(org_id),
            "organization_name": name,
            "instance_url": f"{name}.vaultai.eu",
            "user_count": 12,
            "timestamp": timestamp,
        }
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                "/api/usage-report",
                data=json.dumps(body),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
            )
        assert response.status_code == 200
        return response.json()

    for index, org_id in enumerate(instances):
        assert report(org_id, f"org{index}", yesterday)["organization_status"] == "pending"
    listing = staff_client.get("/api/admin/organizations").json()
    assert listing["summary"] == {"total": 3, "linked": 0, "pending": 3}

    stripe_http.post(f"{STRIPE}/v1/customers", **stripe_json(200, {"id": "cus_NEW123", "object": "customer"}))
    stripe_http.post(
        f"{STRIPE}/v1/subscriptions",
        **stripe_json(
            200, {"id": "sub_NEW789", "object": "subscription", "status": "trialing", "trial_end": None}
        ),
    )
    meter = stripe_http.post(f"{STRIPE}/v1/billing/meter_events", **stripe_json(200, {"object": "x"}))
    linked = staff_client.post(
        f"/api/admin/organizations/{instances[0]}/link",
        data=json.dumps(
            {
                "admin_email": "ops@org0.eu",
                "deployment_type": "on-premise",
                "plan_type": "self-hosted",
                "trial_days": 30,
            }
        ),
        content_type="application/json",
    )
    assert linked.status_code == 200
    assert meter.call_count == 0  # no backfill asked

    body = report(instances[0], "org0", timezone.now().isoformat())
    assert body["organization_status"] == "trial"
    report(instances[1], "org1", timezone.now().isoformat())  # still pending: not billed

    assert meter.call_count == 1
    sent = form(meter.calls[0])
    assert sent["payload[stripe_customer_id]"] == "cus_NEW123"
    assert sent["identifier"] == f"usage-report-{body['report_id']}"
    assert UsageReport.objects.get(pk=body["report_id"]).billing_status == UsageReport.BillingStatus.SENT
    listing = staff_client.get("/api/admin/organizations").json()
    assert listing["summary"] == {"total": 3, "linked": 1, "pending": 2}
