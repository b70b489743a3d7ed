"""The per-address limit on failed API-key authentications, with the proxy's fast lane on.

The fast lane only serves keys this process has already authenticated; unknown, revoked and
expired keys fall back to the ORM gate, whose ``initial()`` runs ``ApiKeyAuthentication``, so
they meet the limit there. A valid key the fast lane knows is still served from a throttled
address (the decision documented on ``ApiKeyAuthentication``).
"""

import time

import httpx
import pytest

from accounts.keys import api_key_generate
from accounts.services import api_key_create, api_key_revoke

from ..factories import global_key_set, plan_configure

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

URL = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}
LIMIT = 3


def _post(base_url: str, key: str) -> httpx.Response:
    return httpx.post(base_url + URL, json=BODY, headers={"Authorization": f"Bearer {key}"}, timeout=20)


def test_unknown_and_revoked_keys_meet_the_limit_and_known_keys_pass(
    caller, fake_upstream, live_asgi_fast, settings
):
    settings.AUTH_FAILURES_PER_MINUTE = LIMIT
    settings.RATELIMIT_ENABLE = True
    user, plaintext, _client = caller
    workspace = user.personal_workspace
    plan_configure(weights={"openrouter": 100})
    global_key_set("openrouter")
    to_revoke, revoked_key = api_key_create(workspace=workspace, created_by=user, name="to revoke")
    if time.time() % 60 > 45:  # the window is a calendar minute: do not straddle its end
        time.sleep(60 - time.time() % 60 + 0.1)
    base_url = live_asgi_fast
    # Both keys are learnt by the fast lane (the first call of a key takes the ORM gate).
    assert [_post(base_url, key).status_code for key in (plaintext, revoked_key) * 2] == [200] * 4
    api_key_revoke(workspace=workspace, key_id=to_revoke.pk)

    refused = [_post(base_url, api_key_generate()) for _ in range(LIMIT)]
    throttled = _post(base_url, api_key_generate())
    revoked = _post(base_url, revoked_key)
    known = _post(base_url, plaintext)

    assert [r.status_code for r in refused] == [401] * LIMIT
    for response in (throttled, revoked):
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "too_many_failed_authentications"
        assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert known.status_code == 200, known.text
