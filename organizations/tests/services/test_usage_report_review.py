"""What a report may change: a linked organization's name/URL only through the operator, and a
user count far above the last accepted one only once the operator releases it."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from core.exceptions import ApiError
from organizations.models import Organization, UsageReport
from organizations.selectors import SHARED_CREDENTIAL
from organizations.services import (
    organization_identity_accept,
    organization_identity_discard,
    organization_link,
    usage_report_ingest,
    usage_report_reject,
    usage_report_release,
)

from ..conftest import STRIPE, stripe_json
from ..factories import LinkedOrganizationFactory, OrganizationFactory

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


def linked_with_baseline(count=10, **kwargs):
    """A linked organization whose last accepted report (yesterday) counted ``count`` users."""
    return LinkedOrganizationFactory(
        name="Victim GmbH",
        instance_url="victim.vaultai.eu",
        latest_user_count=count,
        last_report_at=timezone.now() - timedelta(days=1),
        **kwargs,
    )


# --- Name and URL ----------------------------------------------------------------------------


def test_linked_organization_is_not_renamed_the_change_is_queued():
    organization = linked_with_baseline()

    ingest(organization.pk, organization_name="Pay us at evil.example.net", instance_url="evil.example.net")

    organization.refresh_from_db()
    assert (organization.name, organization.instance_url) == ("Victim GmbH", "victim.vaultai.eu")
    assert organization.has_pending_identity
    assert (organization.pending_name, organization.pending_instance_url) == (
        "Pay us at evil.example.net",
        "evil.example.net",
    )


def test_operator_accepts_a_queued_change():
    organization = linked_with_baseline()
    ingest(organization.pk, organization_name="Victim AG", instance_url="vault.victim.eu")

    assert organization_identity_accept(organization=organization) is True

    organization.refresh_from_db()
    assert (organization.name, organization.instance_url) == ("Victim AG", "vault.victim.eu")
    assert not organization.has_pending_identity and organization.pending_name == ""
    assert organization_identity_accept(organization=organization) is False  # nothing left


def test_operator_discards_a_queued_change():
    organization = linked_with_baseline()
    ingest(organization.pk, organization_name="Pay us at evil.example.net")

    assert organization_identity_discard(organization=organization) is True

    organization.refresh_from_db()
    assert organization.name == "Victim GmbH"
    assert not organization.has_pending_identity
    assert organization_identity_discard(organization=organization) is False


def test_report_with_the_current_identity_queues_nothing():
    organization = linked_with_baseline()
    ingest(organization.pk, organization_name="Victim GmbH", instance_url="victim.vaultai.eu")
    organization.refresh_from_db()
    assert not organization.has_pending_identity


def test_unlinked_organization_still_follows_its_reports():
    org_id = uuid.uuid4()
    ingest(org_id, reported_at=timezone.now() - timedelta(days=1))
    ingest(org_id, organization_name="Acme SAS", instance_url="vault.acme.eu")

    organization = Organization.objects.get(pk=org_id)
    assert (organization.name, organization.instance_url) == ("Acme SAS", "vault.acme.eu")
    assert not organization.has_pending_identity


def test_a_backdated_report_changes_no_identity_even_unlinked():
    org_id = uuid.uuid4()
    ingest(org_id)
    ingest(org_id, organization_name="Backdated", reported_at=timezone.now() - timedelta(days=20))

    assert Organization.objects.get(pk=org_id).name == "Acme Corp"


# --- Held reports ----------------------------------------------------------------------------


def test_a_jump_past_the_factor_is_held_and_changes_nothing(django_capture_on_commit_callbacks):
    organization = linked_with_baseline(count=10)

    with django_capture_on_commit_callbacks() as callbacks:
        result = ingest(organization.pk, user_count=101, organization_name="Renamed")

    assert result.held and not result.duplicate
    assert result.report.billing_status == UsageReport.BillingStatus.HELD
    assert "101" in result.report.hold_reason and "10x" in result.report.hold_reason
    assert callbacks == []  # no meter event queued
    organization.refresh_from_db()
    assert organization.latest_user_count == 10
    assert not organization.has_pending_identity


def test_the_factor_itself_is_accepted():
    organization = linked_with_baseline(count=10)
    assert ingest(organization.pk, user_count=100).report.billing_status == UsageReport.BillingStatus.PENDING


@pytest.mark.parametrize(("factor", "count", "held"), [(0, 10**6, False), (2, 21, True), (2, 20, False)])
def test_the_factor_is_per_organization(factor, count, held):
    organization = linked_with_baseline(count=10, user_count_jump_factor=factor)
    assert ingest(organization.pk, user_count=count).held is held


def test_a_zero_baseline_counts_as_one():
    organization = linked_with_baseline(count=0)
    assert ingest(organization.pk, user_count=10).held is False
    organization = linked_with_baseline(count=0)
    assert ingest(organization.pk, user_count=11).held is True


def test_the_first_report_has_no_baseline_and_is_never_held():
    assert ingest(uuid.uuid4(), user_count=500_000).held is False


def test_a_repeated_jump_the_same_day_is_a_duplicate_of_the_held_report():
    organization = linked_with_baseline(count=10)
    at = timezone.now()
    first = ingest(organization.pk, user_count=500, reported_at=at)
    again = ingest(organization.pk, user_count=900, reported_at=at)

    assert again.duplicate and again.report.pk == first.report.pk
    assert UsageReport.objects.filter(organization=organization).count() == 1


def test_a_held_report_does_not_take_the_days_slot_from_the_genuine_one(
    stripe_http, django_capture_on_commit_callbacks
):
    organization = linked_with_baseline(count=10)
    meter = stripe_http.post(f"{STRIPE}/v1/billing/meter_events", **stripe_json(200, {"object": "x"}))
    at = timezone.now()  # one instant: two times could straddle midnight
    with django_capture_on_commit_callbacks(execute=True):
        forged = ingest(organization.pk, user_count=5000, reported_at=at)
        genuine = ingest(organization.pk, user_count=12, reported_at=at)

    assert forged.held and not genuine.held and not genuine.duplicate
    assert meter.call_count == 1
    genuine.report.refresh_from_db()
    assert genuine.report.billing_status == UsageReport.BillingStatus.SENT

    # The forged one cannot be released any more; it can be rejected.
    with pytest.raises(ApiError) as refused:
        usage_report_release(report=forged.report)
    assert refused.value.code == "conflict"
    assert usage_report_reject(report=forged.report) is True
    assert forged.report.billing_status == UsageReport.BillingStatus.REJECTED
    assert meter.call_count == 1


def test_release_produces_exactly_one_meter_event(stripe_http, django_capture_on_commit_callbacks):
    organization = linked_with_baseline(count=10)
    meter = stripe_http.post(f"{STRIPE}/v1/billing/meter_events", **stripe_json(200, {"object": "x"}))
    result = ingest(organization.pk, user_count=300)
    assert meter.call_count == 0

    with django_capture_on_commit_callbacks(execute=True):
        assert usage_report_release(report=result.report) is True
    with django_capture_on_commit_callbacks(execute=True):
        assert usage_report_release(report=result.report) is False  # already released

    assert meter.call_count == 1
    result.report.refresh_from_db()
    assert result.report.billing_status == UsageReport.BillingStatus.SENT
    assert result.report.reviewed_at is not None
    organization.refresh_from_db()
    assert organization.latest_user_count == 300  # the new baseline
    late = ingest(organization.pk, user_count=2999, reported_at=timezone.now() - timedelta(days=2))
    assert not late.held and not late.duplicate


def test_a_released_report_of_an_unlinked_organization_stays_unbilled_until_linked(
    stripe_http, django_capture_on_commit_callbacks
):
    org_id = uuid.uuid4()
    ingest(org_id, user_count=10, reported_at=timezone.now() - timedelta(days=2))
    held = ingest(org_id, user_count=1000, reported_at=timezone.now() - timedelta(days=1)).report
    assert held.billing_status == UsageReport.BillingStatus.HELD
    stripe_http.post(f"{STRIPE}/v1/customers", **stripe_json(200, {"id": "cus_R", "object": "customer"}))
    stripe_http.post(f"{STRIPE}/v1/subscriptions", **stripe_json(200, {"id": "sub_R", "status": "active"}))
    meter = stripe_http.post(f"{STRIPE}/v1/billing/meter_events", **stripe_json(200, {"object": "x"}))

    with django_capture_on_commit_callbacks(execute=True):
        organization_link(
            organization=Organization.objects.get(pk=org_id),
            admin_email="a@b.co",
            deployment_type="on-premise",
            plan_type="self-hosted",
            trial_days=0,
            backfill=True,
        )
    assert meter.call_count == 1  # the accepted report only; the held one is not backfilled
    held.refresh_from_db()
    assert held.billing_status == UsageReport.BillingStatus.HELD

    with django_capture_on_commit_callbacks(execute=True):
        usage_report_release(report=held)
    assert meter.call_count == 2
    held.refresh_from_db()
    assert held.billing_status == UsageReport.BillingStatus.SENT


def test_release_before_linking_leaves_the_report_unbilled(django_capture_on_commit_callbacks):
    organization = OrganizationFactory(latest_user_count=1, last_report_at=timezone.now() - timedelta(days=1))
    held = ingest(organization.pk, user_count=50).report
    with django_capture_on_commit_callbacks() as callbacks:
        assert usage_report_release(report=held) is True
    assert callbacks == []
    held.refresh_from_db()
    assert held.billing_status == UsageReport.BillingStatus.UNBILLED


def test_reject_only_touches_held_reports():
    organization = linked_with_baseline(count=10)
    accepted = ingest(organization.pk, user_count=11).report
    assert usage_report_reject(report=accepted) is False
    accepted.refresh_from_db()
    assert accepted.billing_status == UsageReport.BillingStatus.PENDING
