from datetime import UTC, datetime, timedelta

import pytest

from billing.models import PeriodAudit, QuotaReservation, UsageCounter
from billing.services import (
    quota_period_rollover,
    quota_reservations_release_stale,
    quota_reserve,
    quota_settle,
)

from ..factories import UserFactory

pytestmark = pytest.mark.django_db

JAN = datetime(2026, 1, 15, 12, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, 0, 5, tzinfo=UTC)


def test_rollover_releases_stale_reservations_and_audits_closed_periods(settings):
    settings.STALE_RESERVATION_SECONDS = 420
    workspace = UserFactory().personal_workspace
    quota_settle(
        reservation=quota_reserve(workspace=workspace, meter="llm_tokens", amount=700, now=JAN),
        actual=600,
        now=JAN,
    )
    stale = quota_reserve(workspace=workspace, meter="llm_tokens", amount=300, now=JAN)
    fresh = quota_reserve(workspace=workspace, meter="llm_tokens", amount=5, now=FEB_1 - timedelta(minutes=2))

    result = quota_period_rollover(now=FEB_1)

    assert QuotaReservation.objects.get(pk=stale.pk).status == QuotaReservation.Status.RELEASED
    assert QuotaReservation.objects.get(pk=fresh.pk).status == QuotaReservation.Status.HELD
    jan = UsageCounter.objects.get(
        workspace=workspace, meter="llm_tokens", period_start=datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert (jan.used, jan.reserved) == (600, 0)
    audit = PeriodAudit.objects.get(counter=jan)
    assert (audit.used, audit.limit, audit.plan_code) == (600, 100_000, "free")
    assert result == {"released": 1, "audited": 1}


def test_rollover_is_safe_twice_and_late():
    workspace = UserFactory().personal_workspace
    quota_settle(
        reservation=quota_reserve(workspace=workspace, meter="llm_tokens", amount=10, now=JAN),
        actual=10,
        now=JAN,
    )
    quota_period_rollover(now=FEB_1)
    assert quota_period_rollover(now=FEB_1) == {"released": 0, "audited": 0}
    quota_period_rollover(now=FEB_1 + timedelta(days=40))
    assert PeriodAudit.objects.filter(workspace=workspace).count() == 1
    assert UsageCounter.objects.get(workspace=workspace).used == 10  # history is never zeroed


def test_open_period_is_not_audited():
    workspace = UserFactory().personal_workspace
    quota_reserve(workspace=workspace, meter="llm_tokens", amount=10, now=JAN)
    quota_period_rollover(now=JAN + timedelta(hours=2))
    assert not PeriodAudit.objects.exists()


def test_stale_release_frees_a_crashed_callers_hold_after_stale_reservation_seconds(settings):
    settings.STALE_RESERVATION_SECONDS = 420
    workspace = UserFactory().personal_workspace
    held = quota_reserve(workspace=workspace, meter="llm_tokens", amount=99_000, now=JAN)
    assert quota_reservations_release_stale(now=JAN + timedelta(seconds=419)) == 0  # may still be live
    assert quota_reservations_release_stale(now=JAN + timedelta(seconds=421)) == 1  # minutes, not an hour
    assert QuotaReservation.objects.get(pk=held.pk).status == QuotaReservation.Status.RELEASED
    assert UsageCounter.objects.get(workspace=workspace, meter="llm_tokens").reserved == 0
    quota_reserve(workspace=workspace, meter="llm_tokens", amount=99_000, now=JAN + timedelta(seconds=422))
    assert quota_reservations_release_stale(now=JAN + timedelta(seconds=423)) == 0  # released once


def test_stale_threshold_follows_the_setting(settings):
    settings.STALE_RESERVATION_SECONDS = 3600
    held = quota_reserve(workspace=UserFactory().personal_workspace, meter="llm_tokens", amount=10, now=JAN)
    assert quota_reservations_release_stale(now=JAN + timedelta(minutes=30)) == 0
    assert QuotaReservation.objects.get(pk=held.pk).status == QuotaReservation.Status.HELD
    assert quota_reservations_release_stale(now=JAN + timedelta(minutes=61)) == 1
