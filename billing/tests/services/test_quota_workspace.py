"""The quota belongs to the workspace: every member's keys draw on one counter per meter."""

import pytest
from django.test import RequestFactory

from accounts.models import Workspace
from accounts.selectors import api_key_identity_get
from accounts.tenancy import workspace_context_get
from accounts.tests.factories import api_key_for
from billing.models import QuotaReservation, UsageCounter
from billing.selectors import quota_status_get
from billing.services import QuotaExceeded, quota_reserve_many, quota_settle_many

from ..factories import UserFactory, member_add, team_workspace

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("midday")]


def _status_seen_by(user, workspace) -> dict:
    """What ``user`` is shown for ``workspace`` (named by the ``X-Workspace`` header)."""
    request = RequestFactory().get("/", HTTP_X_WORKSPACE=str(workspace.pk))
    request.user = user
    return quota_status_get(workspace=workspace_context_get(request).workspace)


def _reserve_with_key(plaintext: str, meters: dict):
    """As the proxy's gate does: the key's identity names the workspace billed."""
    identity = api_key_identity_get(raw_key=plaintext)
    return quota_reserve_many(workspace=Workspace.objects.get(pk=identity.workspace_id), meters=meters)


def test_a_reservation_by_one_members_key_is_seen_in_another_members_status():
    workspace = team_workspace()
    alice = member_add(workspace, role="developer")
    bob = member_add(workspace, role="developer")
    _key, alice_key = api_key_for(alice, workspace=workspace)

    held = _reserve_with_key(alice_key, {"llm_tokens": 700, "requests": 1})

    seen = _status_seen_by(bob, workspace)
    assert (seen["llm_tokens"].reserved, seen["llm_tokens"].remaining) == (700, 100_000 - 700)
    assert seen["requests"].reserved == 1
    assert UsageCounter.objects.filter(workspace=workspace, meter="llm_tokens").count() == 1
    assert set(QuotaReservation.objects.values_list("workspace_id", flat=True)) == {workspace.pk}

    quota_settle_many(reservations=held, actual={"llm_tokens": 300, "requests": 1})
    seen = _status_seen_by(bob, workspace)
    assert (seen["llm_tokens"].used, seen["llm_tokens"].reserved) == (300, 0)
    # Neither member's personal workspace was touched.
    assert quota_status_get(workspace=alice.personal_workspace)["llm_tokens"].used == 0
    assert quota_status_get(workspace=bob.personal_workspace)["llm_tokens"].used == 0


def test_members_together_cannot_pass_the_workspaces_limit():
    """Free plan: 3 requests a day for the workspace, not 3 per member."""
    workspace = team_workspace()
    keys = [api_key_for(member_add(workspace, role="developer"), workspace=workspace)[1] for _ in range(2)]
    _reserve_with_key(keys[0], {"requests": 2})
    _reserve_with_key(keys[1], {"requests": 1})
    with pytest.raises(QuotaExceeded):
        _reserve_with_key(keys[0], {"requests": 1})
    # Another user's personal workspace still has its own 3.
    quota_reserve_many(workspace=UserFactory().personal_workspace, meters={"requests": 3})
