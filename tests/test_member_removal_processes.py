"""Removing a member revokes the keys they created, at once, in every worker: two gunicorn
workers that each served the key (and hold it in their process caches) answer 401 on the next
request after the removal, on the proxy and on the other key-authenticated endpoints."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from accounts.models import Role
from accounts.services import membership_create, membership_remove, workspace_create
from accounts.tests.factories import UserFactory
from proxy.tests.factories import key_for, plan_configure
from tests.served import gunicorn_served

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_a_removed_members_key_is_refused_by_every_worker_on_the_next_request(catalog):
    plan_configure(rate_limit_per_minute=1000)
    owner, developer = UserFactory(), UserFactory()
    team = workspace_create(user=owner, name="Team")
    membership_create(workspace=team, user=developer, role=Role.DEVELOPER, actor=owner, as_operator=False)
    _developer, plaintext = key_for(developer, workspace=team)
    _owner, owner_plaintext = key_for(owner, workspace=team)

    with gunicorn_served(workers=2) as (url, process):
        workers = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True)
        assert len(workers.stdout.split()) == 2
        with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {plaintext}"}) as http:
            # Enough calls on fresh connections that both workers learn the key.
            served = {
                httpx.get(f"{url}/api/proxy/v1/models", headers=http.headers).status_code for _ in range(40)
            }
            assert served == {200}

            revoked = membership_remove(workspace=team, user_id=developer.pk, actor=owner)

            # Fewer than the per-address budget of refused keys (AUTH_FAILURES_PER_MINUTE).
            after = [httpx.get(f"{url}/api/proxy/v1/models", headers=http.headers) for _ in range(12)]
            assert {response.status_code for response in after} == {401}
            assert {response.json()["error"]["code"] for response in after} == {"invalid_api_key"}
            assert http.get("/api/credits/balance").status_code == 401
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {owner_plaintext}"}) as owner_http:
            assert owner_http.get("/api/proxy/v1/models").status_code == 200  # the owner's key is untouched
    assert [key.created_by_id for key in revoked] == [developer.pk]  # the answer names them
