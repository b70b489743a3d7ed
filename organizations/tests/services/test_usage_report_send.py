import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from organizations.models import UsageReport
from organizations.services import usage_report_retry, usage_report_send, usage_reports_retry_due

from ..conftest import STRIPE, form, stripe_error, stripe_json
from ..factories import LinkedOrganizationFactory, UsageReportFactory

METER_URL = f"{STRIPE}/v1/billing/meter_events"
METER_OK = stripe_json(200, {"object": "billing.meter_event", "event_name": "vaultai_active_users"})


def pending_report(**kwargs):
    kwargs.setdefault("organization", LinkedOrganizationFactory(stripe_customer_id="cus_ABC123"))
    return UsageReportFactory(billing_status=UsageReport.BillingStatus.PENDING, **kwargs)


@pytest.mark.django_db
def test_sends_meter_event_with_identifier_and_timestamp(stripe_http):
    report = pending_report(user_count=45)
    meter = stripe_http.post(METER_URL, **METER_OK)

    sent = usage_report_send(report_id=report.pk)

    assert meter.call_count == 1
    call = stripe_http.calls[0]
    body = form(call)
    assert body == {
        "event_name": "vaultai_active_users",
        "payload[stripe_customer_id]": "cus_ABC123",
        "payload[value]": "45",
        "identifier": f"usage-report-{report.pk}",
        "timestamp": str(int(report.reported_at.timestamp())),
    }
    assert call.request.headers["Idempotency-Key"] == f"usage-report-{report.pk}"
    assert sent.billing_status == UsageReport.BillingStatus.SENT
    assert sent.meter_identifier == f"usage-report-{report.pk}"
    assert sent.sent_at is not None
    assert sent.attempts == 1


@pytest.mark.django_db
def test_sent_report_is_never_sent_again(stripe_http):
    report = pending_report()
    meter = stripe_http.post(METER_URL, **METER_OK)

    usage_report_send(report_id=report.pk)
    assert usage_report_send(report_id=report.pk) is None
    assert usage_reports_retry_due() == []
    assert meter.call_count == 1


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["unbilled", "failed", "sent"])
def test_only_pending_reports_are_claimed(stripe_http, status):
    report = pending_report()
    UsageReport.objects.filter(pk=report.pk).update(billing_status=status)
    assert usage_report_send(report_id=report.pk) is None
    assert len(stripe_http.calls) == 0


@pytest.mark.django_db
def test_transient_failure_backs_off_then_fails_after_max_attempts(stripe_http, settings):
    settings.ORG_METER_MAX_ATTEMPTS = 3
    settings.ORG_METER_RETRY_BASE_SECONDS = 300
    report = pending_report()
    stripe_http.post(METER_URL, **stripe_error(500, "Stripe hiccup"))
    now = timezone.now()

    first = usage_report_send(report_id=report.pk, now=now)
    assert first.billing_status == UsageReport.BillingStatus.PENDING
    assert first.attempts == 1
    assert first.next_attempt_at == now + timedelta(seconds=300)
    assert "Stripe hiccup" in first.last_error
    # Not due yet: neither a direct send nor the beat job touches it.
    assert usage_report_send(report_id=report.pk, now=now + timedelta(seconds=299)) is None
    assert usage_reports_retry_due(now=now + timedelta(seconds=299)) == []

    later = now + timedelta(seconds=300)
    second = usage_report_send(report_id=report.pk, now=later)
    assert second.attempts == 2
    assert second.next_attempt_at == later + timedelta(seconds=600)  # doubled

    third = usage_report_send(report_id=report.pk, now=later + timedelta(seconds=600))
    assert third.billing_status == UsageReport.BillingStatus.FAILED
    assert third.attempts == 3
    assert third.next_attempt_at is None
    assert len(stripe_http.calls) == 3
    assert usage_reports_retry_due(now=later + timedelta(days=1)) == []


@pytest.mark.django_db
def test_refusal_fails_at_once(stripe_http):
    report = pending_report()
    stripe_http.post(METER_URL, **stripe_error(400, "No such customer: 'cus_ABC123'"))

    result = usage_report_send(report_id=report.pk)

    assert result.billing_status == UsageReport.BillingStatus.FAILED
    assert "No such customer" in result.last_error


@pytest.mark.django_db
def test_report_older_than_meter_window_fails_without_calling_stripe(stripe_http):
    report = pending_report(reported_at=timezone.now() - timedelta(days=35, minutes=1))
    result = usage_report_send(report_id=report.pk)
    assert result.billing_status == UsageReport.BillingStatus.FAILED
    assert "35-day" in result.last_error
    assert len(stripe_http.calls) == 0


@pytest.mark.django_db
def test_operator_retry_of_failed_report_sends_it(stripe_http, django_capture_on_commit_callbacks):
    report = pending_report()
    failing = stripe_http.post(METER_URL, **stripe_error(400, "Temporary refusal"))
    usage_report_send(report_id=report.pk)
    stripe_http.remove(failing)
    stripe_http.post(METER_URL, **METER_OK)

    with django_capture_on_commit_callbacks(execute=True):
        assert usage_report_retry(report=report) is True

    report.refresh_from_db()
    assert report.billing_status == UsageReport.BillingStatus.SENT
    assert report.attempts == 1  # a fresh budget
    assert usage_report_retry(report=report) is False  # only failed reports


@pytest.mark.django_db
def test_retry_job_reclaims_an_expired_lease(stripe_http):
    """A worker that died mid-send leaves the report 'sending'; after the lease it is resent
    with the same identifier, which Stripe deduplicates."""
    report = pending_report()
    sending = UsageReport.objects.filter(pk=report.pk)
    sending.update(
        billing_status=UsageReport.BillingStatus.SENDING,
        lease_expires_at=timezone.now() + timedelta(minutes=5),
        attempts=1,
    )
    stripe_http.post(METER_URL, **METER_OK)

    assert usage_reports_retry_due() == []  # the worker may still be sending
    sending.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert usage_reports_retry_due() == [str(report.pk)]
    report.refresh_from_db()
    assert report.billing_status == UsageReport.BillingStatus.SENT
    assert form(stripe_http.calls[0])["identifier"] == f"usage-report-{report.pk}"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_send_the_meter_event_once(stripe_http):
    report = pending_report()

    def slow_stripe(request):
        time.sleep(0.3)  # both workers are in flight at the same time
        return 200, {"Request-Id": "req_test"}, '{"object": "billing.meter_event"}'

    stripe_http.add_callback("POST", METER_URL, callback=slow_stripe, content_type="application/json")
    barrier = threading.Barrier(2)
    results, errors = [], []

    def worker():
        try:
            barrier.wait()
            results.append(usage_report_send(report_id=report.pk))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert errors == []
    assert len(stripe_http.calls) == 1
    assert sorted(r is None for r in results) == [False, True]
    report.refresh_from_db()
    assert report.billing_status == UsageReport.BillingStatus.SENT
    assert report.attempts == 1
