from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from dashboards import services
from dashboards.tasks import operator_alerts_check_task
from dashboards.tests.factories import DailySpendFactory, StaffFactory, UserFactory
from proxy import budget
from proxy.router import provider_failure_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_emails(db):
    StaffFactory(email="ops@example.com")
    StaffFactory(email="cto@example.com")
    StaffFactory(email="gone@example.com", is_active=False)
    UserFactory(email="customer@example.com")
    return ["ops@example.com", "cto@example.com"]


def test_budget_alert_once_per_day_at_90_percent(settings, staff_emails):
    settings.DAILY_BUDGET_USD = Decimal("10")
    now = timezone.now()
    DailySpendFactory(day=now.date(), spent_usd=Decimal("8.99"))
    assert services.budget_alert_send(now=now) is False  # 89.9 %: nothing

    budget.budget_reserve(day=now.date(), amount_micro=10_000, hold_id="in-flight")  # 9.00 USD = 90 %
    assert services.budget_alert_send(now=now) is True
    assert services.budget_alert_send(now=now) is False  # same day: gated
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert sorted(message.to) == sorted(staff_emails)
    assert "90.00%" in message.subject and "DAILY_BUDGET_USD" in message.body


def test_budget_alert_gate_is_released_when_sending_fails(settings, staff_emails, monkeypatch):
    settings.DAILY_BUDGET_USD = Decimal("1")
    now = timezone.now()
    DailySpendFactory(day=now.date(), spent_usd=Decimal("1"))

    def broken(**kwargs):
        raise ConnectionError("smtp down")

    monkeypatch.setattr(services, "send_mail", broken)
    with pytest.raises(ConnectionError):
        services.budget_alert_send(now=now)
    monkeypatch.undo()
    assert services.budget_alert_send(now=now) is True  # the next run retries
    assert len(mail.outbox) == 1


def test_cooldown_alert_once_per_episode(settings, staff_emails):
    settings.PROXY_COOLDOWN_FAILURES = 1
    assert services.cooldown_alert_send() == []
    provider_failure_record(provider="groq")
    assert services.cooldown_alert_send() == ["groq"]
    assert services.cooldown_alert_send() == []  # still the same cooldown
    assert len(mail.outbox) == 1 and "groq" in mail.outbox[0].subject


def test_alert_task_runs_both_checks(settings, staff_emails):
    settings.DAILY_BUDGET_USD = Decimal("1")
    DailySpendFactory(day=timezone.now().date(), spent_usd=Decimal("0.95"))
    result = operator_alerts_check_task.delay().get()
    assert result == {"budget_alerted": True, "cooldown_alerted": []}


def test_no_staff_no_email(settings):
    settings.DAILY_BUDGET_USD = Decimal("1")
    DailySpendFactory(day=timezone.now().date(), spent_usd=Decimal("2"))
    assert services.budget_alert_send() is True
    assert mail.outbox == []
