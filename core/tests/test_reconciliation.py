"""Nightly reconciliation: drift is recorded (once per subject), shown to operators, never corrected."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tests.factories import StaffUserFactory, UserFactory
from billing.models import UsageCounter
from billing.services import quota_release, quota_reserve, quota_settle
from config.celery import app
from core import reconciliation, services
from core.models import ReconciliationDrift
from core.tasks import reconciliation_run_task
from credits.models import CreditAccount
from credits.services import credit_grant, credit_hold
from organizations.models import UsageReport
from organizations.tests.factories import LinkedOrganizationFactory, UsageReportFactory
from proxy.tests.factories import plan_configure


@pytest.fixture
def plan(db):
    return plan_configure(limits={"llm_tokens": 1000, "emails": 10, "requests": None})


def _traffic(user, admin):
    """Real reserve/settle/release and credit traffic in the user's personal workspace, so a
    clean run has something to check."""
    workspace = user.personal_workspace
    settled = quota_reserve(workspace=workspace, meter="llm_tokens", amount=300)
    quota_settle(reservation=settled, actual=120)
    quota_release(reservation=quota_reserve(workspace=workspace, meter="llm_tokens", amount=50))
    quota_reserve(workspace=workspace, meter="llm_tokens", amount=70)  # still in flight
    credit_grant(workspace=workspace, amount=500, admin_user=admin)
    credit_hold(workspace=workspace, amount=40, reference="test")


def test_consistent_data_records_no_drift(plan):
    user, admin = UserFactory(), StaffUserFactory()
    _traffic(user, admin)
    report = UsageReportFactory(organization=LinkedOrganizationFactory())
    UsageReport.objects.filter(pk=report.pk).update(
        billing_status=UsageReport.BillingStatus.SENT,
        meter_identifier=report.meter_identifier_expected,
        sent_at=timezone.now(),
    )

    assert services.reconciliation_run() == []
    assert not ReconciliationDrift.objects.exists()


def test_credit_drift_is_recorded_and_not_corrected(plan):
    user, admin = UserFactory(), StaffUserFactory()
    _traffic(user, admin)
    CreditAccount.objects.filter(workspace=user.personal_workspace).update(
        balance=999
    )  # someone wrote around the ledger

    drifts = services.reconciliation_run()

    assert [(d.source, d.subject, d.expected, d.actual) for d in drifts] == [
        ("credits.ledger", f"workspace:{user.personal_workspace.pk}", "500", "999")
    ]
    assert drifts[0].detail["open_holds"] == 40
    assert (
        CreditAccount.objects.get(workspace=user.personal_workspace).balance == 999
    )  # never silently corrected


def test_quota_counter_drift_is_recorded(midday, plan):
    user, admin = UserFactory(), StaffUserFactory()
    _traffic(user, admin)
    counter = UsageCounter.objects.get(workspace=user.personal_workspace, meter="llm_tokens")
    UsageCounter.objects.filter(pk=counter.pk).update(used=400, reserved=0)

    (drift,) = services.reconciliation_run()

    assert (drift.source, drift.subject, drift.expected, drift.actual) == (
        "billing.quota",
        f"counter:{counter.pk}",
        "120",
        "400",
    )
    assert drift.detail["open_holds"] == 70
    assert drift.detail["reserved"] == 0
    assert UsageCounter.objects.get(pk=counter.pk).used == 400


def test_usage_report_drift_kinds(db):
    organization = LinkedOrganizationFactory()
    old = timezone.now() - timedelta(days=3)
    wrong_id = UsageReportFactory(organization=organization, reported_at=old)
    failed = UsageReportFactory(organization=organization, reported_at=old + timedelta(days=1))
    overdue = UsageReportFactory(organization=organization, reported_at=old + timedelta(days=2))
    fresh = UsageReportFactory(organization=organization)
    UsageReport.objects.filter(pk=wrong_id.pk).update(
        billing_status="sent", meter_identifier="usage-report-other", sent_at=old
    )
    UsageReport.objects.filter(pk=failed.pk).update(billing_status="failed")
    UsageReport.objects.filter(pk__in=[overdue.pk, fresh.pk]).update(billing_status="pending")
    UsageReport.objects.filter(pk=overdue.pk).update(created_at=old)

    drifts = {d.subject: d for d in services.reconciliation_run()}

    assert set(drifts) == {f"report:{wrong_id.pk}", f"report:{failed.pk}", f"report:{overdue.pk}"}
    assert drifts[f"report:{wrong_id.pk}"].actual == "usage-report-other"
    assert drifts[f"report:{wrong_id.pk}"].expected == f"usage-report-{wrong_id.pk}"
    assert drifts[f"report:{failed.pk}"].actual == "failed"
    assert drifts[f"report:{overdue.pk}"].actual == "pending"


def test_a_second_run_refreshes_the_open_drift_instead_of_adding_one(plan):
    user, admin = UserFactory(), StaffUserFactory()
    _traffic(user, admin)
    CreditAccount.objects.filter(workspace=user.personal_workspace).update(balance=999)
    first_at = timezone.now() - timedelta(days=1)
    services.reconciliation_run(now=first_at)
    CreditAccount.objects.filter(workspace=user.personal_workspace).update(balance=998)

    services.reconciliation_run()

    drift = ReconciliationDrift.objects.get()
    assert drift.actual == "998"
    assert drift.detected_at == first_at
    assert drift.last_seen_at > first_at


def test_resolved_drift_that_comes_back_opens_a_new_record(plan):
    user, admin = UserFactory(), StaffUserFactory()
    _traffic(user, admin)
    CreditAccount.objects.filter(workspace=user.personal_workspace).update(balance=999)
    (drift,) = services.reconciliation_run()
    assert services.reconciliation_drift_resolve(drift=drift, note="fixed") is True
    assert services.reconciliation_drift_resolve(drift=drift, note="again") is False

    services.reconciliation_run()

    assert ReconciliationDrift.objects.count() == 2
    assert ReconciliationDrift.objects.filter(resolved_at__isnull=True).count() == 1


def test_a_failing_check_is_recorded_and_the_others_still_run(plan, monkeypatch):
    user, admin = UserFactory(), StaffUserFactory()
    _traffic(user, admin)
    CreditAccount.objects.filter(workspace=user.personal_workspace).update(balance=999)

    def broken(*, now):
        raise RuntimeError("boom")

    monkeypatch.setitem(reconciliation.RECONCILIATION_CHECKS, "billing.quota", broken)

    drifts = {(d.source, d.subject) for d in services.reconciliation_run()}

    assert drifts == {
        ("credits.ledger", f"workspace:{user.personal_workspace.pk}"),
        ("billing.quota", "check"),
    }


def test_nightly_task_is_scheduled_and_runs(plan):
    entry = app.conf.beat_schedule["core-reconciliation-run"]
    assert entry["task"] == "core.reconciliation_run"
    assert entry["options"]["expires"] > 0
    user = UserFactory()
    credit_grant(workspace=user.personal_workspace, amount=10, admin_user=StaffUserFactory())
    CreditAccount.objects.filter(workspace=user.personal_workspace).update(balance=11)

    assert reconciliation_run_task.delay().get() == 1


def test_admin_lists_open_drift_and_resolves_it(plan, client):
    user, admin = UserFactory(), StaffUserFactory(is_superuser=True)
    _traffic(user, admin)
    CreditAccount.objects.filter(workspace=user.personal_workspace).update(balance=999)
    (drift,) = services.reconciliation_run()
    client.force_login(admin)

    page = client.get("/admin/core/reconciliationdrift/?state=open")
    assert page.status_code == 200
    assert f"workspace:{user.personal_workspace.pk}" in page.content.decode()

    response = client.post(
        "/admin/core/reconciliationdrift/",
        {"action": "resolve", "_selected_action": [drift.pk]},
        follow=True,
    )
    assert response.status_code == 200
    drift.refresh_from_db()
    assert drift.resolved_at is not None
    assert CreditAccount.objects.get(workspace=user.personal_workspace).balance == 999


def test_checks_cost_a_fixed_number_of_queries_however_many_workspaces(plan, django_assert_max_num_queries):
    """A nightly job over every workspace: no per-workspace queries (and nothing to record when clean)."""
    admin = StaffUserFactory()
    for _ in range(6):
        _traffic(UserFactory(), admin)
    for _ in range(3):
        UsageReportFactory(organization=LinkedOrganizationFactory())

    with django_assert_max_num_queries(8):  # one per check (the budget's included), whatever the count
        assert services.reconciliation_run() == []
