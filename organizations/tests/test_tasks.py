from datetime import timedelta

import pytest
from django.utils import timezone

from config.celery import app
from organizations.models import UsageReport
from organizations.tasks import usage_report_send_task, usage_reports_retry_due_task

from .conftest import STRIPE, stripe_json
from .factories import LinkedOrganizationFactory, UsageReportFactory


def test_retry_job_is_scheduled_every_ten_minutes_with_expiry():
    entry = app.conf.beat_schedule["organizations-meter-events-retry"]
    assert entry["task"] == "organizations.usage_reports_retry_due"
    assert entry["options"]["expires"] < 600
    assert entry["schedule"].minute == set(range(0, 60, 10))


@pytest.mark.django_db
def test_retry_job_sends_due_reports_and_skips_the_rest(stripe_http):
    organization = LinkedOrganizationFactory()
    due = UsageReportFactory(organization=organization, billing_status=UsageReport.BillingStatus.PENDING)
    later = UsageReportFactory(
        organization=organization,
        billing_status=UsageReport.BillingStatus.PENDING,
        reported_at=timezone.now() - timedelta(days=1),
        next_attempt_at=timezone.now() + timedelta(minutes=30),
    )
    meter = stripe_http.post(f"{STRIPE}/v1/billing/meter_events", **stripe_json(200, {"object": "x"}))

    assert usage_reports_retry_due_task() == 1
    assert meter.call_count == 1
    assert UsageReport.objects.get(pk=due.pk).billing_status == UsageReport.BillingStatus.SENT
    assert UsageReport.objects.get(pk=later.pk).billing_status == UsageReport.BillingStatus.PENDING


@pytest.mark.django_db
def test_send_task_is_safe_to_run_twice(stripe_http):
    report = UsageReportFactory(
        organization=LinkedOrganizationFactory(), billing_status=UsageReport.BillingStatus.PENDING
    )
    meter = stripe_http.post(f"{STRIPE}/v1/billing/meter_events", **stripe_json(200, {"object": "x"}))
    assert usage_report_send_task(str(report.pk)) == "sent"
    assert usage_report_send_task(str(report.pk)) is None
    assert meter.call_count == 1
