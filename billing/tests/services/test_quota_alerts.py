import asyncio
from datetime import UTC, datetime

import pytest
from django.core import mail
from django.core.cache import cache

from billing.models import Plan, UsageCounter
from billing.selectors import plan_get_by_code, workspace_plan_cache_key
from billing.services import quota_alert_may_be_due, quota_alert_send, quota_reserve, quota_settle
from billing.services.alerts import _quota_alert_check, quota_thresholds_reevaluate
from notifications.models import ThresholdState, WebhookEvent
from notifications.selectors import notification_settings_get, notification_settings_local_clear
from notifications.services import notification_settings_update, webhook_endpoint_create

from ..factories import SubscriptionFactory, UserFactory, member_add, team_workspace

pytestmark = pytest.mark.django_db

APRIL = datetime(2026, 4, 10, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_thresholds():
    notification_settings_local_clear()
    yield
    notification_settings_local_clear()


def _use(workspace, amount, now):
    quota_settle(
        reservation=quota_reserve(workspace=workspace, meter="llm_tokens", amount=amount, now=now),
        actual=amount,
        now=now,
    )


def _states(workspace, **filters):
    return ThresholdState.objects.filter(workspace=workspace, subject="quota:llm_tokens", **filters)


def test_alerts_at_80_and_100_percent_once_each(django_capture_on_commit_callbacks):
    user = UserFactory()  # free: 100 000 tokens / month
    workspace = user.personal_workspace
    with django_capture_on_commit_callbacks(execute=True):
        _use(workspace, 79_999, APRIL)
    assert mail.outbox == []
    with django_capture_on_commit_callbacks(execute=True):
        _use(workspace, 1, APRIL)
        _use(workspace, 1, APRIL)
        _use(workspace, 5_000, APRIL)
    assert len(mail.outbox) == 1
    assert "80%" in mail.outbox[0].subject
    assert mail.outbox[0].to == [user.email]
    assert "80000 of the 100000 llm tokens" in mail.outbox[0].body
    assert "2026-05-01" in mail.outbox[0].body  # when the quota resets
    with django_capture_on_commit_callbacks(execute=True):
        _use(workspace, 14_999, APRIL)
        _use(workspace, 0, APRIL)
    assert len(mail.outbox) == 2
    assert "used up" in mail.outbox[1].subject
    assert sorted(_states(workspace).values_list("threshold", flat=True)) == [80, 100]


def test_a_new_period_re_arms_the_alerts(django_capture_on_commit_callbacks):
    workspace = UserFactory().personal_workspace
    with django_capture_on_commit_callbacks(execute=True):
        _use(workspace, 85_000, APRIL)
        _use(workspace, 85_000, datetime(2026, 5, 2, tzinfo=UTC))
    assert [m.subject for m in mail.outbox] == [mail.outbox[0].subject] * 2
    assert _states(workspace, threshold=80).count() == 2


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
        _use(workspace, 100_000, APRIL)
    assert [sorted(message.to) for message in mail.outbox] == [sorted([owner.email, billing.email])] * 2
    assert all("Acme" in message.subject for message in mail.outbox)
    assert "used up" in mail.outbox[-1].subject


def test_the_workspaces_own_thresholds_fire_and_email_can_be_off(django_capture_on_commit_callbacks):
    owner = UserFactory()
    workspace = owner.personal_workspace
    notification_settings_update(
        workspace=workspace, actor=owner, quota_thresholds=[25, 50], email_enabled=False
    )
    with django_capture_on_commit_callbacks(execute=True):
        _use(workspace, 24_000, APRIL)
    assert not _states(workspace).exists()
    with django_capture_on_commit_callbacks(execute=True):
        _use(workspace, 30_000, APRIL)  # 54 %: both at once
        _use(workspace, 30_000, APRIL)  # 84 %: 80 is not one of this workspace's thresholds
    assert sorted(_states(workspace).values_list("threshold", flat=True)) == [25, 50]
    assert mail.outbox == []  # email off: the state (and any webhook) only


def test_an_upgrade_resolves_what_the_new_limit_no_longer_holds(django_capture_on_commit_callbacks):
    """100 000 tokens used of the free plan's 100 000: both thresholds fired. On a bigger plan
    (student: 2 000 000, 5 %) neither holds: both resolve, once; a reevaluation later changes nothing."""
    owner = UserFactory()
    workspace = owner.personal_workspace
    with django_capture_on_commit_callbacks(execute=True):
        _use(workspace, 100_000, APRIL)
    assert _states(workspace, resolved_at__isnull=True).count() == 2

    SubscriptionFactory(workspace=workspace, plan=Plan.objects.get(code="student"))
    cache.delete(workspace_plan_cache_key(workspace.pk))
    with django_capture_on_commit_callbacks(execute=True):
        assert quota_thresholds_reevaluate(workspace_id=workspace.pk, now=APRIL) == {"llm_tokens": [80, 100]}
        assert quota_thresholds_reevaluate(workspace_id=workspace.pk, now=APRIL) == {}
    assert not _states(workspace, resolved_at__isnull=True).exists()

    # Reaching 80 % of the new limit in the same period is a new crossing: it fires again.
    with django_capture_on_commit_callbacks(execute=True):
        _use(workspace, 1_500_000, APRIL)
    assert list(_states(workspace, resolved_at__isnull=True).values_list("threshold", flat=True)) == [80]
    assert len(mail.outbox) == 3


@pytest.fixture
def team_with_endpoint(settings):
    """A team whose endpoint listens to the quota events (a closed local port: the events are
    stored, their deliveries fail, which is not what these tests look at)."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    owner = UserFactory()
    workspace = team_workspace(owner=owner, name="Upgraders")
    webhook_endpoint_create(
        workspace=workspace,
        actor=owner,
        url="http://127.0.0.1:9/hook",
        events=["quota.threshold_reached", "quota.threshold_resolved"],
    )
    return workspace, owner


def test_a_partial_upgrade_resolves_only_the_threshold_that_stopped_holding(
    django_capture_on_commit_callbacks, team_with_endpoint
):
    workspace, owner = team_with_endpoint
    with django_capture_on_commit_callbacks(execute=True):
        _use(workspace, 100_000, APRIL)
    assert WebhookEvent.objects.filter(workspace=workspace, type="quota.threshold_reached").count() == 2
    notification_settings_update(workspace=workspace, actor=owner, quota_thresholds=[5, 100])
    SubscriptionFactory(workspace=workspace, plan=Plan.objects.get(code="student"))
    cache.delete(workspace_plan_cache_key(workspace.pk))
    with django_capture_on_commit_callbacks(execute=True):
        # 100 000 of 2 000 000 is 5 %: 100 % is resolved, 80 % (no longer a threshold) too,
        # and 5 % never fired here, so nothing resolves it.
        resolved = quota_thresholds_reevaluate(workspace_id=workspace.pk, now=APRIL)
    assert resolved == {"llm_tokens": [80, 100]}
    events = WebhookEvent.objects.filter(workspace=workspace, type="quota.threshold_resolved")
    assert sorted(event.data["threshold"] for event in events) == [80, 100]
    assert {event.data["limit"] for event in events} == {2_000_000}


def test_may_be_due_is_exact_once_this_process_knows_the_thresholds():
    owner = UserFactory()
    workspace = owner.personal_workspace
    plan = Plan.objects.get(code="free")
    row = [(1, "llm_tokens", 30_000, 0, APRIL, 10)]  # 30 % of the free plan's tokens
    # Not read yet: the lowest threshold a workspace may set stands in (the settle finds out).
    assert quota_alert_may_be_due(rows=row, plan=plan, workspace_id=workspace.pk)
    assert quota_alert_may_be_due(rows=row, plan=plan)
    notification_settings_update(workspace=workspace, actor=owner, quota_thresholds=[50])
    notification_settings_local_clear()
    notification_settings_get(workspace_id=workspace.pk)
    assert not quota_alert_may_be_due(rows=row, plan=plan, workspace_id=workspace.pk)
    assert quota_alert_may_be_due(
        rows=[(1, "llm_tokens", 50_000, 0, APRIL, 10)], plan=plan, workspace_id=workspace.pk
    )
    assert not quota_alert_may_be_due(
        rows=[(1, "llm_tokens", 50_000, 0, APRIL, 0)], plan=plan
    )  # nothing charged


def test_the_queued_task_fires_what_the_call_did_not(django_capture_on_commit_callbacks):
    """``billing.tasks.quota_alert_send`` (queued before alerts fired on the call): it fires
    each reached threshold once, whoever comes first."""
    workspace = UserFactory().personal_workspace
    quota_settle(
        reservation=quota_reserve(workspace=workspace, meter="llm_tokens", amount=90_000, now=APRIL),
        actual=90_000,
        now=APRIL,
    )  # its on-commit work is dropped: nothing fired
    counter_id = UsageCounter.objects.get(workspace=workspace, meter="llm_tokens").pk
    with django_capture_on_commit_callbacks(execute=True):
        assert quota_alert_send(workspace_id=None, meter="llm_tokens", counter_id=counter_id, now=APRIL) == [
            80
        ]
        assert quota_alert_send(workspace_id=workspace.pk, meter="llm_tokens", counter_id=counter_id) == []
    assert len(mail.outbox) == 1


def test_a_settle_finished_on_the_event_loop_never_blocks(django_assert_num_queries):
    """The proxy's fast lane finishes a settle on the event loop when ``quota_alert_may_be_due``
    said nothing was due. Should the check disagree (this process's copy of the thresholds was
    replaced or dropped in between), it does no I/O there: a query would raise
    SynchronousOnlyOperation and fail a call already on the books."""
    owner = UserFactory()
    workspace = owner.personal_workspace
    plan = plan_get_by_code(code="free")  # the catalogue copy, quotas loaded (as the proxy holds it)
    rows = [(1, "llm_tokens", 90_000, 0, APRIL, 10)]
    assert quota_alert_may_be_due(rows=rows, plan=plan, workspace_id=workspace.pk)  # copy not held

    async def finish_on_the_loop():
        _quota_alert_check(
            workspace_id=workspace.pk,
            meter="llm_tokens",
            counter_id=1,
            used=90_000,
            period_start=APRIL,
            now=APRIL,
            plan=plan,
        )

    with django_assert_num_queries(0):
        asyncio.run(finish_on_the_loop())
    assert not ThresholdState.objects.exists()
