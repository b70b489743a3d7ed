import pytest
from django.core.cache import cache
from django.utils import timezone

from accounts.models import AuditEvent
from accounts.selectors import API_KEY_REVOKED_MARKER, ApiKeyIdentity, api_key_cache_key
from accounts.services import api_key_revoke
from accounts.services.suspension import workspace_reinstate, workspace_suspend
from accounts.tests.factories import StaffUserFactory, api_key_for, member_add, team_workspace
from core.exceptions import ApiError

pytestmark = pytest.mark.django_db

STALE = "stale identity"


@pytest.fixture
def operator(db):
    return StaffUserFactory()


def _events(workspace, action):
    return list(AuditEvent.objects.filter(workspace=workspace, action=action))


def test_suspend_records_why_and_republishes_every_live_key_after_commit(
    user, operator, django_capture_on_commit_callbacks
):
    workspace = team_workspace(owner=user)
    member = member_add(workspace, role="developer")
    live, _ = api_key_for(user, workspace=workspace)
    other, _ = api_key_for(member, workspace=workspace)
    revoked, _ = api_key_for(user, workspace=workspace, name="old")
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(workspace=workspace, key_id=revoked.pk)
    for key in (live, other):
        cache.set(api_key_cache_key(key.key_hash), STALE, 300)

    with django_capture_on_commit_callbacks(execute=True):
        workspace_suspend(workspace=workspace, reason="  chargeback fraud ", actor=operator)

    workspace.refresh_from_db()
    assert workspace.suspended_at is not None
    assert workspace.suspension_reason == "chargeback fraud"
    for key in (live, other):
        identity = cache.get(api_key_cache_key(key.key_hash))
        assert isinstance(identity, ApiKeyIdentity) and identity.key_id == key.pk
        assert identity.suspended is True
    assert cache.get(api_key_cache_key(revoked.key_hash)) == API_KEY_REVOKED_MARKER
    [event] = _events(workspace, "workspace.suspended")
    assert event.actor == operator
    assert event.details["reason"] == "chargeback fraud" and event.details["keys"] == 2


def test_suspending_twice_keeps_the_first_suspension_and_one_event(user, operator):
    workspace = user.personal_workspace
    first = workspace_suspend(workspace=workspace, reason="abuse", actor=operator)
    at = first.suspended_at
    workspace_suspend(workspace=workspace, reason="again", actor=operator, now=timezone.now())
    workspace.refresh_from_db()
    assert workspace.suspended_at == at and workspace.suspension_reason == "abuse"
    assert len(_events(workspace, "workspace.suspended")) == 1


def test_suspend_needs_a_reason_and_an_operator(user, operator):
    workspace = user.personal_workspace
    with pytest.raises(ApiError) as blank:
        workspace_suspend(workspace=workspace, reason="   ", actor=operator)
    assert blank.value.status_code == 400 and blank.value.param == "reason"
    with pytest.raises(ApiError) as not_staff:
        workspace_suspend(workspace=workspace, reason="abuse", actor=user)
    assert not_staff.value.status_code == 403
    workspace.refresh_from_db()
    assert workspace.suspended_at is None
    assert not _events(workspace, "workspace.suspended")


def test_a_key_of_an_inactive_creator_is_not_brought_back(user, operator, django_capture_on_commit_callbacks):
    workspace = team_workspace(owner=user)
    gone = member_add(workspace, role="developer")
    key, _ = api_key_for(gone, workspace=workspace)
    gone.is_active = False
    with django_capture_on_commit_callbacks(execute=True):
        gone.save(update_fields=["is_active"])
    assert cache.get(api_key_cache_key(key.key_hash)) == API_KEY_REVOKED_MARKER

    with django_capture_on_commit_callbacks(execute=True):
        workspace_suspend(workspace=workspace, reason="abuse", actor=operator)
        workspace_reinstate(workspace=workspace, actor=operator)

    assert cache.get(api_key_cache_key(key.key_hash)) == API_KEY_REVOKED_MARKER


def test_reinstate_lifts_the_suspension_once(user, operator, django_capture_on_commit_callbacks):
    workspace = user.personal_workspace
    key, _ = api_key_for(user)
    workspace_suspend(workspace=workspace, reason="unpaid invoice", actor=operator)
    cache.set(api_key_cache_key(key.key_hash), STALE, 300)

    with django_capture_on_commit_callbacks(execute=True):
        workspace_reinstate(workspace=workspace, actor=operator, reason="paid")
    workspace_reinstate(workspace=workspace, actor=operator)  # not suspended: nothing to do

    workspace.refresh_from_db()
    assert workspace.suspended_at is None and workspace.suspension_reason == ""
    identity = cache.get(api_key_cache_key(key.key_hash))
    assert isinstance(identity, ApiKeyIdentity) and identity.suspended is False
    [event] = _events(workspace, "workspace.reinstated")
    assert event.actor == operator
    assert event.details["reason"] == "unpaid invoice" and event.details["reinstate_reason"] == "paid"
