"""The webhooks API: owners and admins manage endpoints, a developer is refused (403), a
non-member and another workspace's endpoint are 404; secrets only in create and rotate."""

from __future__ import annotations

import pytest

from accounts.models import AuditEvent
from accounts.tests.factories import UserFactory
from notifications.models import WebhookDelivery, WebhookEndpoint

from .conftest import client_for

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://93.184.215.14/hooks/tollgate"  # a public address literal: no DNS lookup


@pytest.fixture
def owner_client(team):
    workspace, owner, _ = team
    return client_for(owner, workspace)


@pytest.fixture
def endpoint(team, endpoint_for):
    workspace, owner, _ = team
    return endpoint_for(workspace, owner, PUBLIC_URL, ["credits.low"])[0]


def test_create_shows_the_secret_once_and_list_never(owner_client, team, secret_registry):
    workspace, _owner, _ = team
    created = owner_client.post(
        "/api/webhooks",
        {"url": PUBLIC_URL, "events": ["credits.low", "payment.failed"], "description": "ops"},
        format="json",
    )

    assert created.status_code == 201, created.content
    body = created.json()
    secret_registry.add(body["secret"])
    assert body["secret"].startswith("whsec_") and set(body) == {"id", "url", "events", "secret"}
    assert body["events"] == ["credits.low", "payment.failed"]
    listed = owner_client.get("/api/webhooks")
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()] == [body["id"]]
    assert body["secret"] not in listed.content.decode()
    one = owner_client.get(f"/api/webhooks/{body['id']}")
    assert one.json()["enabled"] is True and body["secret"] not in one.content.decode()
    audit = AuditEvent.objects.get(workspace=workspace, action="webhook.created")
    assert body["secret"] not in str(audit.details)


def test_unknown_events_and_empty_lists_are_refused(owner_client):
    response = owner_client.post("/api/webhooks", {"url": PUBLIC_URL, "events": ["nope"]}, format="json")
    assert response.status_code == 400
    response = owner_client.post("/api/webhooks", {"url": PUBLIC_URL, "events": []}, format="json")
    assert response.status_code == 400


def test_patch_disable_enable_and_delete_are_audited(owner_client, endpoint, team):
    workspace, _owner, _ = team
    url = f"/api/webhooks/{endpoint.pk}"

    patched = owner_client.patch(url, {"events": ["payment.failed"], "description": "x"}, format="json")
    assert patched.status_code == 200 and patched.json()["events"] == ["payment.failed"]
    disabled = owner_client.patch(url, {"enabled": False}, format="json")
    assert disabled.json()["enabled"] is False and disabled.json()["disabled_at"]
    assert owner_client.post(f"{url}/test").status_code == 409
    enabled = owner_client.patch(url, {"enabled": True}, format="json")
    assert enabled.json()["enabled"] is True
    assert owner_client.delete(url).status_code == 204
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    actions = list(
        AuditEvent.objects.filter(workspace=workspace, action__startswith="webhook.").values_list(
            "action", flat=True
        )
    )
    assert sorted(actions) == sorted(
        ["webhook.created", "webhook.updated", "webhook.updated", "webhook.updated", "webhook.deleted"]
    )


def test_rotate_returns_a_new_secret_once(owner_client, endpoint, secret_registry):
    response = owner_client.post(f"/api/webhooks/{endpoint.pk}/rotate")

    assert response.status_code == 200
    secret = response.json()["secret"]
    secret_registry.add(secret)
    endpoint.refresh_from_db()
    assert endpoint.secret == secret and endpoint.previous_secret and endpoint.previous_secret_expires_at
    assert secret not in owner_client.get(f"/api/webhooks/{endpoint.pk}").content.decode()


def test_test_event_is_queued_and_logged(owner_client, endpoint):
    response = owner_client.post(f"/api/webhooks/{endpoint.pk}/test")

    assert response.status_code == 202, response.content
    assert response.json()["event_type"] == "webhook.test"
    log = owner_client.get(f"/api/webhooks/{endpoint.pk}/deliveries")
    assert log.status_code == 200
    assert [row["event_type"] for row in log.json()] == ["webhook.test"]
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/webhooks", None),
        ("post", "/api/webhooks", {"url": PUBLIC_URL, "events": ["credits.low"]}),
        ("get", "/api/webhooks/{id}", None),
        ("patch", "/api/webhooks/{id}", {"description": "no"}),
        ("delete", "/api/webhooks/{id}", None),
        ("post", "/api/webhooks/{id}/rotate", None),
        ("post", "/api/webhooks/{id}/test", None),
        ("get", "/api/webhooks/{id}/deliveries", None),
    ],
)
def test_a_developer_is_refused_and_a_non_member_gets_404(team, endpoint, method, path, body):
    workspace, _owner, developer = team
    url = path.format(id=endpoint.pk)
    before = list(WebhookEndpoint.objects.values())

    refused = getattr(client_for(developer, workspace), method)(url, body, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["required_role"] == ["owner", "admin"]

    stranger = client_for(UserFactory(), workspace)
    assert getattr(stranger, method)(url, body, format="json").status_code == 404

    # Another user's own workspace does not hold this endpoint: 404 there too.
    if "{id}" in path:
        outsider = client_for(UserFactory())
        response = getattr(outsider, method)(url, body, format="json")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert list(WebhookEndpoint.objects.values()) == before


def test_the_list_does_not_grow_queries_with_endpoints(
    owner_client, team, endpoint_for, django_assert_max_num_queries
):
    workspace, owner, _ = team
    for n in range(5):
        endpoint_for(workspace, owner, f"{PUBLIC_URL}/{n}", ["credits.low"])
    with django_assert_max_num_queries(6):
        assert len(owner_client.get("/api/webhooks").json()) == 5
