from datetime import UTC, datetime

import pytest
from django.core import mail

from billing.models import QuotaAlertSent
from billing.services import quota_reserve, quota_settle

from ..factories import UserFactory

pytestmark = pytest.mark.django_db


def _use(user, amount, now):
    quota_settle(
        reservation=quota_reserve(user=user, meter="llm_tokens", amount=amount, now=now),
        actual=amount,
        now=now,
    )


def test_alerts_at_80_and_100_percent_once_each(django_capture_on_commit_callbacks):
    user = UserFactory()  # free: 100 000 tokens / month
    now = datetime(2026, 4, 10, tzinfo=UTC)
    with django_capture_on_commit_callbacks(execute=True):
        _use(user, 79_999, now)
    assert mail.outbox == []
    with django_capture_on_commit_callbacks(execute=True):
        _use(user, 1, now)
        _use(user, 1, now)
        _use(user, 5_000, now)
    assert len(mail.outbox) == 1
    assert "80%" in mail.outbox[0].subject
    assert mail.outbox[0].to == [user.email]
    with django_capture_on_commit_callbacks(execute=True):
        _use(user, 14_999, now)
        _use(user, 0, now)
    assert len(mail.outbox) == 2
    assert "used up" in mail.outbox[1].subject
    assert sorted(QuotaAlertSent.objects.filter(user=user).values_list("threshold", flat=True)) == [80, 100]


def test_a_new_period_re_arms_the_alerts(django_capture_on_commit_callbacks):
    user = UserFactory()
    with django_capture_on_commit_callbacks(execute=True):
        _use(user, 85_000, datetime(2026, 4, 10, tzinfo=UTC))
        _use(user, 85_000, datetime(2026, 5, 2, tzinfo=UTC))
    assert [m.subject for m in mail.outbox] == [mail.outbox[0].subject] * 2
    assert QuotaAlertSent.objects.filter(user=user, threshold=80).count() == 2


def test_daily_meters_send_no_alert(django_capture_on_commit_callbacks):
    user = UserFactory()
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            quota_settle(reservation=quota_reserve(user=user, meter="requests", amount=1), actual=1)
    assert mail.outbox == []
