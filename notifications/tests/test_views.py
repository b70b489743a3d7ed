"""The /webhooks/ page: add an endpoint (secret shown once after the redirect), the delivery
log, test/rotate/disable/delete buttons; a developer gets the 403 page."""

from __future__ import annotations

import pytest
from django.test import Client

from notifications.models import WebhookEndpoint

pytestmark = pytest.mark.django_db

URL = "https://93.184.215.14/hooks/page"


def _client(user, workspace) -> Client:
    client = Client(HTTP_X_WORKSPACE=str(workspace.pk))
    client.force_login(user)
    return client


def test_owner_adds_an_endpoint_and_sees_the_secret_once(team, secret_registry):
    workspace, owner, _ = team
    client = _client(owner, workspace)

    response = client.post("/webhooks/", {"url": URL, "events": ["credits.low", "payment.failed"]})

    assert response.status_code == 302
    endpoint = WebhookEndpoint.objects.get(workspace=workspace)
    secret_registry.add(endpoint.secret)
    assert endpoint.events == ["credits.low", "payment.failed"]
    first = client.get("/webhooks/").content.decode()
    assert endpoint.secret in first and URL in first
    assert endpoint.secret not in client.get("/webhooks/").content.decode()

    assert client.post(f"/webhooks/{endpoint.pk}/test/").status_code == 302
    log = client.get(f"/webhooks/?endpoint={endpoint.pk}").content.decode()
    assert "webhook.test" in log
    assert client.post(f"/webhooks/{endpoint.pk}/toggle/", {"enabled": "0"}).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.disabled_at is not None
    client.post(f"/webhooks/{endpoint.pk}/rotate/")
    rotated = client.get("/webhooks/").content.decode()
    endpoint.refresh_from_db()
    secret_registry.add(endpoint.secret)
    assert endpoint.secret in rotated and "24 hours" in rotated
    assert client.post(f"/webhooks/{endpoint.pk}/delete/").status_code == 302
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


def test_a_bad_url_is_an_error_message_not_a_500(team, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    workspace, owner, _ = team
    client = _client(owner, workspace)

    response = client.post(
        "/webhooks/", {"url": "http://127.0.0.1/x", "events": ["credits.low"]}, follow=True
    )

    assert response.status_code == 200
    assert "cannot receive webhooks" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_a_developer_gets_403(team):
    workspace, _owner, developer = team
    client = _client(developer, workspace)

    assert client.get("/webhooks/").status_code == 403
    assert client.post("/webhooks/", {"url": URL, "events": ["credits.low"]}).status_code == 403
