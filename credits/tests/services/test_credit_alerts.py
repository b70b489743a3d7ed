"""The balance alerts: ``credits.low`` below the workspace's threshold and ``credits.depleted`` at
0, each once until a top-up resolves it (``credits.low_resolved`` / ``credits.depleted_resolved``),
then armed again; emails to the billing contacts; the workspace's own threshold (0: never low)."""

from __future__ import annotations

import pytest
from django.core import mail

from credits.services.alerts import credit_balance_alerts_check, credit_balance_alerts_resolve
from notifications.models import ThresholdState, WebhookEvent
from notifications.selectors import notification_settings_local_clear
from notifications.services import notification_settings_update, webhook_endpoint_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_thresholds(settings):
    settings.CREDITS_LOW_THRESHOLD = 20
    notification_settings_local_clear()
    yield
    notification_settings_local_clear()


@pytest.fixture
def listening(workspace, user, settings):
    """An endpoint on the balance events (a closed local port: events are stored, deliveries fail)."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    webhook_endpoint_create(
        workspace=workspace,
        actor=user,
        url="http://127.0.0.1:9/hook",
        events=["credits.low", "credits.low_resolved", "credits.depleted", "credits.depleted_resolved"],
    )
    return workspace


def _types(workspace) -> list[str]:
    return list(
        WebhookEvent.objects.filter(workspace=workspace).order_by("id").values_list("type", flat=True)
    )


def test_low_once_depleted_once_resolved_by_a_top_up_then_armed_again(
    listening, user, member, django_capture_on_commit_callbacks
):
    workspace = listening
    accountant = member("billing")
    member("developer")

    def debit(balance, available=None):
        with django_capture_on_commit_callbacks(execute=True):
            credit_balance_alerts_check(
                workspace_id=workspace.pk,
                balance=balance,
                available=balance if available is None else available,
            )

    debit(25)
    debit(20)  # not below
    assert _types(workspace) == [] and mail.outbox == []
    debit(15)  # crosses
    debit(10)
    debit(0)  # spent the last credit
    debit(0)
    assert _types(workspace) == ["credits.low", "credits.depleted"]
    low = WebhookEvent.objects.get(type="credits.low")
    assert low.data == {"available": 15, "balance": 15, "threshold": 20}
    assert [sorted(message.to) for message in mail.outbox] == [sorted([user.email, accountant.email])] * 2
    assert "running low" in mail.outbox[0].subject and "15" in mail.outbox[0].body
    assert "/credits/" in mail.outbox[0].body and workspace.name in mail.outbox[0].body
    assert "used up" in mail.outbox[1].subject

    with django_capture_on_commit_callbacks(execute=True):
        assert credit_balance_alerts_resolve(workspace_id=workspace.pk, balance=10, available=10) == [
            "credits.depleted_resolved"
        ]  # above 0, still low
        assert credit_balance_alerts_resolve(workspace_id=workspace.pk, balance=110, available=110) == [
            "credits.low_resolved"
        ]
        assert credit_balance_alerts_resolve(workspace_id=workspace.pk, balance=200, available=200) == []
    assert not ThresholdState.objects.filter(resolved_at__isnull=True).exists()

    debit(12)  # low again after the top-up: fires again
    assert _types(workspace) == [
        "credits.low",
        "credits.depleted",
        "credits.depleted_resolved",
        "credits.low_resolved",
        "credits.low",
    ]
    assert len(mail.outbox) == 3  # resolutions are not emailed


def test_held_credits_count_against_the_low_threshold(listening, django_capture_on_commit_callbacks):
    workspace = listening
    with django_capture_on_commit_callbacks(execute=True):
        credit_balance_alerts_check(workspace_id=workspace.pk, balance=100, available=5)
    assert _types(workspace) == ["credits.low"]


def test_the_workspaces_threshold_and_zero_turns_low_off(listening, user, django_capture_on_commit_callbacks):
    workspace = listening
    notification_settings_update(workspace=workspace, actor=user, credits_low_balance=50)
    with django_capture_on_commit_callbacks(execute=True):
        credit_balance_alerts_check(workspace_id=workspace.pk, balance=45, available=45)
    assert _types(workspace) == ["credits.low"]
    assert WebhookEvent.objects.get().data["threshold"] == 50

    notification_settings_update(workspace=workspace, actor=user, credits_low_balance=0)
    notification_settings_local_clear()
    with django_capture_on_commit_callbacks(execute=True):
        # 0: never low, so the open alert is resolved by the next top-up whatever the balance
        assert credit_balance_alerts_resolve(workspace_id=workspace.pk, balance=1, available=1) == [
            "credits.low_resolved"
        ]
        credit_balance_alerts_check(workspace_id=workspace.pk, balance=1, available=1)
    assert _types(workspace) == ["credits.low", "credits.low_resolved"]


def test_above_the_threshold_a_debit_costs_no_query(workspace, django_assert_num_queries):
    credit_balance_alerts_resolve(workspace_id=workspace.pk, balance=500, available=500)  # reads the settings
    with django_assert_num_queries(0):
        credit_balance_alerts_check(workspace_id=workspace.pk, balance=400, available=400)
