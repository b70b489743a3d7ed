"""Alerts once per period, on the observation that crosses, and resolved when they stop holding:
``threshold_reached`` / ``threshold_resolved`` and the call path's doors for key and member
limits, against the real database and Redis."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from django.core import mail
from django.db import connection, transaction

from accounts.tests.factories import api_key_for, member_add
from notifications.models import ThresholdState, WebhookEvent
from notifications.services import notification_settings_update
from notifications.thresholds import (
    key_limit_usage_observed,
    member_limit_usage_observed,
    threshold_reached,
    threshold_resolved,
)

pytestmark = pytest.mark.django_db

APRIL = datetime(2026, 4, 1, tzinfo=UTC)
MAY = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def listening(team, receiver, endpoint_for):
    """The team with an endpoint on every alert event (a local receiver)."""
    workspace, owner, _ = team
    events = [
        "key.limit_reached",
        "key.limit_resolved",
        "member.limit_reached",
        "member.limit_resolved",
        "quota.threshold_reached",
        "quota.threshold_resolved",
    ]
    endpoint_for(workspace, owner, receiver.url, events)
    return workspace, owner


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run one observation as the proxy does, outside a transaction: its on-commit work runs
    right after it (the test's own transaction would hold it back to the end)."""

    def run(function, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            function(*args, **kwargs)

    return run


def _events(workspace, type_):
    return list(WebhookEvent.objects.filter(workspace=workspace, type=type_).order_by("id"))


def test_reached_fires_once_and_emails_the_billing_contacts(team, django_capture_on_commit_callbacks):
    workspace, owner, _ = team
    accountant = member_add(workspace, role="billing")
    kwargs = {
        "workspace_id": workspace.pk,
        "subject": "quota:llm_tokens",
        "threshold": 80,
        "period_start": APRIL,
        "event": "quota.threshold_reached",
        "data": {"meter": "llm_tokens", "threshold": 80, "used": 80, "limit": 100},
    }
    with django_capture_on_commit_callbacks(execute=True):
        assert threshold_reached(**kwargs) is True
        assert threshold_reached(**kwargs) is False
    assert len(mail.outbox) == 1
    assert sorted(mail.outbox[0].to) == sorted([owner.email, accountant.email])
    assert "80%" in mail.outbox[0].subject and workspace.name in mail.outbox[0].subject
    state = ThresholdState.objects.get()
    assert state.resolved_at is None and state.reached_at is not None


def test_no_email_when_the_workspace_turned_email_off(team, django_capture_on_commit_callbacks):
    workspace, owner, _ = team
    notification_settings_update(workspace=workspace, actor=owner, email_enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        assert threshold_reached(
            workspace_id=workspace.pk,
            subject="credits:low",
            threshold=20,
            period_start=APRIL,
            event="credits.low",
            data={"available": 3, "balance": 3, "threshold": 20},
        )
    assert mail.outbox == []


@pytest.mark.django_db(transaction=True)
def test_twenty_threads_crossing_together_fire_once(team):
    workspace, _owner, _ = team
    results, barrier = [], threading.Barrier(20)

    def cross():
        try:
            barrier.wait()
            results.append(
                threshold_reached(
                    workspace_id=workspace.pk,
                    subject="key:1:requests:day",
                    threshold=100,
                    period_start=APRIL,
                    event="key.limit_reached",
                    data={},
                )
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=cross) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 19 + [True]
    assert ThresholdState.objects.count() == 1


def test_resolved_once_then_a_new_crossing_fires_again(listening, django_capture_on_commit_callbacks):
    workspace, _owner = listening
    reach = {
        "workspace_id": workspace.pk,
        "subject": "quota:llm_tokens",
        "period_start": APRIL,
        "event": "quota.threshold_reached",
        "data": {"meter": "llm_tokens"},
    }
    resolve = {**reach, "event": "quota.threshold_resolved"}
    with django_capture_on_commit_callbacks(execute=True):
        threshold_reached(threshold=80, **reach)
        threshold_reached(threshold=100, **reach)
        assert threshold_resolved(thresholds=[100], **resolve) == [100]
        assert threshold_resolved(thresholds=[100], **resolve) == []
        assert threshold_resolved(**resolve) == [80]
        assert threshold_resolved(**resolve) == []
        assert threshold_reached(threshold=80, **reach) is True  # holds again: a new crossing
    resolved = _events(workspace, "quota.threshold_resolved")
    assert [event.data["threshold"] for event in resolved] == [100, 80]
    assert len(_events(workspace, "quota.threshold_reached")) == 3
    assert ThresholdState.objects.filter(resolved_at__isnull=True).count() == 1


def _observe_key(workspace, api_key, *, used, limit, period_start=APRIL):
    key_limit_usage_observed(
        workspace_id=workspace.pk,
        api_key_id=api_key.pk,
        unit="requests",
        window="month",
        period_start=period_start,
        used=used,
        limit=limit,
    )


def test_a_key_limit_fires_each_threshold_once_per_period(
    listening, receiver, django_capture_on_commit_callbacks
):
    workspace, owner = listening
    api_key = api_key_for(owner, workspace=workspace, name="ci key")[0]
    with django_capture_on_commit_callbacks(execute=True):
        for used in (10, 79, 80, 81, 95, 100, 100):
            _observe_key(workspace, api_key, used=used, limit=100)
    reached = _events(workspace, "key.limit_reached")
    assert [event.data["threshold"] for event in reached] == [80, 100]
    assert reached[0].data == {
        "api_key_id": api_key.pk,
        "unit": "requests",
        "window": "month",
        "threshold": 80,
        "used": 80,
        "limit": 100,
        "period_start": APRIL.isoformat(),
    }
    assert [payload["type"] for payload in receiver.payloads()] == ["key.limit_reached"] * 2
    assert len(mail.outbox) == 2 and '"ci key"' in mail.outbox[0].subject

    with django_capture_on_commit_callbacks(execute=True):  # a new period fires again
        _observe_key(workspace, api_key, used=90, limit=100, period_start=MAY)
    assert [event.data["threshold"] for event in _events(workspace, "key.limit_reached")] == [80, 100, 80]


def test_a_raised_key_limit_resolves_what_no_longer_holds(listening, committed):
    workspace, owner = listening
    api_key = api_key_for(owner, workspace=workspace)[0]
    committed(_observe_key, workspace, api_key, used=100, limit=100)
    committed(_observe_key, workspace, api_key, used=100, limit=120)  # 83 %: 100 % resolved, 80 % holds
    committed(_observe_key, workspace, api_key, used=101, limit=120)
    resolved = _events(workspace, "key.limit_resolved")
    assert [(event.data["threshold"], event.data["limit"]) for event in resolved] == [(100, 120)]
    committed(_observe_key, workspace, api_key, used=101, limit=1000)  # 10 %: 80 % resolved too
    committed(_observe_key, workspace, api_key, used=101, limit=1000)
    assert [event.data["threshold"] for event in _events(workspace, "key.limit_resolved")] == [100, 80]
    assert not ThresholdState.objects.filter(resolved_at__isnull=True).exists()
    committed(_observe_key, workspace, api_key, used=800, limit=1000)  # reached again under the new limit
    assert [event.data["threshold"] for event in _events(workspace, "key.limit_reached")] == [80, 100, 80]


def test_the_steady_state_touches_no_database(
    listening, django_capture_on_commit_callbacks, django_assert_num_queries
):
    workspace, owner = listening
    api_key = api_key_for(owner, workspace=workspace)[0]
    with django_capture_on_commit_callbacks(execute=True):
        _observe_key(workspace, api_key, used=85, limit=100)  # fires 80 % (and reads the thresholds)
    with django_assert_num_queries(0), django_capture_on_commit_callbacks(execute=True) as callbacks:
        for used in (85, 86, 87, 88):
            _observe_key(workspace, api_key, used=used, limit=100)
        _observe_key(workspace, api_key, used=1, limit=100, period_start=MAY)  # below: nothing
    assert callbacks == []


def test_the_workspaces_limit_thresholds_apply(listening, django_capture_on_commit_callbacks):
    workspace, owner = listening
    notification_settings_update(workspace=workspace, actor=owner, limit_thresholds=[50])
    api_key = api_key_for(owner, workspace=workspace)[0]
    with django_capture_on_commit_callbacks(execute=True):
        _observe_key(workspace, api_key, used=49, limit=100)
        _observe_key(workspace, api_key, used=100, limit=100)
    assert [event.data["threshold"] for event in _events(workspace, "key.limit_reached")] == [50]


def test_a_member_cap_fires_once_per_period_and_resolves(listening, committed):
    workspace, owner = listening
    developer = member_add(workspace, role="developer")

    def observe(used, limit, period_start=APRIL):
        member_limit_usage_observed(
            workspace_id=workspace.pk,
            user_id=developer.pk,
            unit="money",
            window="month",
            period_start=period_start,
            used=used,
            limit=limit,
        )

    committed(observe, 4_000, 5_000)  # 80 %
    committed(observe, 4_500, 5_000)
    committed(observe, 4_500, 5_000, period_start=MAY)  # a new period fires again
    committed(observe, 4_500, 50_000, period_start=MAY)  # raised: resolved
    reached = _events(workspace, "member.limit_reached")
    assert [(event.data["threshold"], event.data["period_start"]) for event in reached] == [
        (80, APRIL.isoformat()),
        (80, MAY.isoformat()),
    ]
    assert reached[0].data["user_id"] == developer.pk and reached[0].data["unit"] == "money"
    resolved = _events(workspace, "member.limit_resolved")
    assert [(event.data["threshold"], event.data["limit"]) for event in resolved] == [(80, 50_000)]
    assert developer.email in mail.outbox[0].subject


def test_a_call_rolled_back_fires_nothing_and_blocks_nothing(listening, committed):
    workspace, owner = listening
    api_key = api_key_for(owner, workspace=workspace)[0]

    def observe_then_fail():
        with transaction.atomic():
            _observe_key(workspace, api_key, used=90, limit=100)
            raise RuntimeError("the call failed after its settle")

    with pytest.raises(RuntimeError):
        committed(observe_then_fail)
    assert _events(workspace, "key.limit_reached") == []
    committed(_observe_key, workspace, api_key, used=91, limit=100)  # the next one fires
    assert [event.data["used"] for event in _events(workspace, "key.limit_reached")] == [91]
