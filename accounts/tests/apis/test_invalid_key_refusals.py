"""A refused key that is still on the books (revoked, or its creator deactivated) counts against
its workspace's day for the operator's abuse list: once per key and minute, however many calls."""

from datetime import UTC, date, datetime

import pytest
import time_machine
from rest_framework.test import APIClient

from accounts.keys import api_key_generate
from accounts.models import InvalidKeyDay, Role
from accounts.services import api_key_revoke
from accounts.tests.factories import api_key_for, member_add, team_workspace

pytestmark = pytest.mark.django_db

MINUTE = datetime(2026, 11, 21, 10, 0, 5, tzinfo=UTC)
NEXT_MINUTE = datetime(2026, 11, 21, 10, 1, 5, tzinfo=UTC)


def _get_with(key: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client.get("/api/keys")


def test_a_revoked_key_counts_one_minute_per_minute_however_many_calls(user):
    api_key, plaintext = api_key_for(user)
    api_key_revoke(workspace=user.personal_workspace, key_id=api_key.pk)

    with time_machine.travel(MINUTE, tick=False):
        responses = [_get_with(plaintext) for _ in range(3)]
    with time_machine.travel(NEXT_MINUTE, tick=False):
        responses.append(_get_with(plaintext))

    assert [r.status_code for r in responses] == [401] * 4
    assert {r.json()["error"]["code"] for r in responses} == {"invalid_api_key"}
    [day] = InvalidKeyDay.objects.filter(workspace=user.personal_workspace)
    assert (day.day, day.minutes) == (date(2026, 11, 21), 2)


def test_the_key_of_a_deactivated_member_is_counted_against_its_workspace(user):
    team = team_workspace()
    member_add(team, role=Role.DEVELOPER, user=user)
    _api_key, plaintext = api_key_for(user, workspace=team)
    assert _get_with(plaintext).status_code == 200
    user.is_active = False
    user.save()

    with time_machine.travel(MINUTE, tick=False):
        assert _get_with(plaintext).status_code == 401

    assert list(InvalidKeyDay.objects.values_list("workspace_id", "minutes")) == [(team.pk, 1)]


def test_a_key_nobody_was_issued_is_refused_and_counted_against_nobody(user):
    api_key_for(user)  # a working key exists; the presented one is not it

    assert _get_with(api_key_generate()).status_code == 401
    assert _get_with("sk_agentai_not-a-key").status_code == 401
    assert not InvalidKeyDay.objects.exists()
