"""Targets on private, loopback, link-local or reserved addresses, or other schemes, are refused
when the setting is off (the default)."""

from __future__ import annotations

import pytest

from notifications.ssrf import UnsafeTarget, target_resolve

from .conftest import client_for

pytestmark = pytest.mark.django_db

REFUSED = [
    "http://127.0.0.1/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.10:8080/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook",
    "http://localhost:8000/hook",  # a name that resolves to loopback
    "http://224.0.0.1/hook",
    "ftp://93.184.215.14/hook",
    "file:///etc/passwd",
    "https://user:pass@93.184.215.14/hook",
]


@pytest.mark.parametrize("url", REFUSED)
def test_unsafe_targets_are_refused_at_create(team, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    workspace, owner, _ = team

    response = client_for(owner, workspace).post(
        "/api/webhooks", {"url": url, "events": ["credits.low"]}, format="json"
    )

    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == "url"
    with pytest.raises(UnsafeTarget):
        target_resolve(url)


def test_a_public_address_passes(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    assert target_resolve("https://93.184.215.14:8443/x").address == "93.184.215.14"


def test_update_to_an_unsafe_target_is_refused(team, settings, endpoint_for):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    workspace, owner, _ = team
    endpoint, _secret = endpoint_for(workspace, owner, "https://93.184.215.14/hook", ["credits.low"])

    response = client_for(owner, workspace).patch(
        f"/api/webhooks/{endpoint.pk}", {"url": "http://127.0.0.1:9/x"}, format="json"
    )

    assert response.status_code == 400
    endpoint.refresh_from_db()
    assert endpoint.url == "https://93.184.215.14/hook"


def test_the_setting_allows_a_local_receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    assert target_resolve("http://127.0.0.1:9/x").address == "127.0.0.1"
    with pytest.raises(UnsafeTarget):
        target_resolve("ftp://127.0.0.1/x")  # the scheme rule stays
