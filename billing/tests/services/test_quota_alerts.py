from datetime import UTC, datetime

import pytest
from django.core import mail

from billing.models import QuotaAlertSent
from billing.services import quota_reserve, quota_settle

from ..factories import UserFactory, member_add, team_workspace

pytestmark = pytest.mark.django_db


def _use(workspace, amount, now):
    quota_settle(
        reservation=quota_reserve(workspace=workspace, meter="llm_tokens", amount=amount, now=now),
        actual=amount,
        now=now,
    )


def test_alerts_at_80_and_100_percent_once_each(django_capture_on_commit_callbacks):
    user = UserFactory()  # free: 100 000 tokens / month
    workspace = user.personal_workspace
    now = datetime(2026, 4, 10, tzinfo=UTC)
    with django_capture_on_commit_callbacks(execute=True):
        _use(workspace, 79_999, now)
    assert mail.outbox == []
    with django_capture_on_commit_callbacks(execute=True):
        _use(workspace, 1, now)
        _use(workspace, 1, now)
        _use(workspace, 5_000, now)
    assert len(mail.outbox) == 1
    assert "80%" in mail.outbox[0].subject
    assert mail.outbox[0].to == [user.email]
    with django_capture_on_commit_callbacks(execute=True):
        _use(workspace, 14_999, now)
        _use(workspace, 0, now)
    assert len(mail.outbox) == 2
    assert "used up" in mail.outbox[1].subject
    thresholds = QuotaAlertSent.objects.filter(workspace=workspace).values_list("threshold", flat=True)
    assert sorted(thresholds) == [80, 100]


def test_a_new_period_re_arms_the_alerts(django_capture_on_commit_callbacks):
    workspace = UserFactory().personal_workspace
    with django_capture_on_commit_callbacks(execute=True):
        _use(workspace, 85_000, datetime(2026, 4, 10, tzinfo=UTC))
        _use(workspace, 85_000, datetime(2026, 5, 2, tzinfo=UTC))
    assert [m.subject for m in mail.outbox] == [mail.outbox[0].subject] * 2
    assert QuotaAlertSent.objects.filter(workspace=workspace, threshold=80).count() == 2


def test_daily_meters_send_no_alert(django_capture_on_commit_callbacks):
    workspace = UserFactory().personal_workspace
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            quota_settle(reservation=quota_reserve(workspace=workspace, meter="requests", amount=1), actual=1)
    assert mail.outbox == []


def test_a_team_alert_goes_to_its_owners_and_billing_members_only(django_capture_on_commit_callbacks):
    """The quota is the workspace's: a developer's calls use it up, the people who pay hear of it."""
    owner = UserFactory()
    workspace = team_workspace(owner=owner, name="Acme")
    billing = member_add(workspace, role="billing")
    member_add(workspace, role="developer")
    member_add(workspace, role="admin")
    with django_capture_on_commit_callbacks(execute=True):
        _use(workspace, 100_000, datetime(2026, 4, 10, tzinfo=UTC))
    assert [sorted(message.to) for message in mail.outbox] == [sorted([owner.email, billing.email])] * 2
    assert all("Acme" in message.subject for message in mail.outbox)
    assert "used up" in mail.outbox[-1].subject
