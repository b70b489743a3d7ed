import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from organizations.models import Organization, UsageReport
from organizations.selectors import SHARED_CREDENTIAL
from organizations.services import usage_report_ingest

from ..conftest import STRIPE, stripe_json
from ..factories import LinkedOrganizationFactory

pytestmark = pytest.mark.django_db


def ingest(organization_id, **kwargs):
    values = {
        "organization_name": "Acme Corp",
        "instance_url": "acme.vaultai.eu",
        "user_count": 45,
        "reported_at": timezone.now() - timedelta(minutes=1),
        "credential": SHARED_CREDENTIAL,
    }
    values.update(kwargs)
    return usage_report_ingest(organization_id=organization_id, **values)


def test_report_day_is_the_utc_date_of_the_timestamp():
    org_id = uuid.uuid4()
    late = datetime(2030, 3, 1, 23, 30, tzinfo=UTC)
    result = ingest(org_id, reported_at=late, now=late)
    assert result.report.report_on.isoformat() == "2030-03-01"
    # 00:10 the next day in UTC is another day, even though it is 01:10 in Paris.
    nxt = ingest(org_id, reported_at=datetime(2030, 3, 2, 0, 10, tzinfo=UTC))
    assert nxt.duplicate is False


def test_late_report_does_not_overwrite_the_newer_count():
    org_id = uuid.uuid4()
    now = timezone.now()
    ingest(org_id, user_count=50, reported_at=now)
    ingest(org_id, user_count=30, reported_at=now - timedelta(days=2))

    organization = Organization.objects.get(pk=org_id)
    assert organization.latest_user_count == 50
    assert organization.last_report_at == now
    assert UsageReport.objects.filter(organization=organization).count() == 2


def test_linked_report_becomes_exactly_one_meter_event_after_commit(
    stripe_http, django_capture_on_commit_callbacks
):
    organization = LinkedOrganizationFactory(stripe_customer_id="cus_ABC123")
    meter = stripe_http.post(f"{STRIPE}/v1/billing/meter_events", **stripe_json(200, {"object": "x"}))

    reported_at = timezone.now()  # one instant: the two reports may straddle midnight
    with django_capture_on_commit_callbacks(execute=True):
        result = ingest(organization.pk, user_count=77, reported_at=reported_at)
    with django_capture_on_commit_callbacks(execute=True):
        duplicate = ingest(organization.pk, user_count=78, reported_at=reported_at)

    assert duplicate.duplicate is True
    assert meter.call_count == 1
    result.report.refresh_from_db()
    assert result.report.billing_status == UsageReport.BillingStatus.SENT
    assert result.report.deployment_type == organization.deployment_type


def test_canceled_organization_reports_are_not_billed(django_capture_on_commit_callbacks):
    organization = LinkedOrganizationFactory(status=Organization.Status.CANCELED)
    with django_capture_on_commit_callbacks() as callbacks:
        result = ingest(organization.pk)
    assert callbacks == []
    assert result.report.billing_status == UsageReport.BillingStatus.UNBILLED
