"""Signatures (checked with the ``standardwebhooks`` package), delivery to a local receiver,
retries with backoff until 24 h, auto-disable with an email, and the SSRF check at delivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from notifications.models import WebhookDelivery, WebhookEndpoint
from notifications.services import event_emit, webhook_endpoint_rotate
from notifications.tasks import webhook_deliver_task, webhook_deliveries_sweep_task

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _emit(workspace, capture, type_="credits.low", data=None):
    with capture(execute=True):
        return event_emit(workspace=workspace, type=type_, data=data or {"available": 3})


def test_a_delivery_is_signed_the_standard_way_and_tampering_fails(
    team, receiver, endpoint_for, django_capture_on_commit_callbacks
):
    workspace, owner, _ = team
    endpoint, secret = endpoint_for(workspace, owner, receiver.url, ["credits.low"])

    event = _emit(workspace, django_capture_on_commit_callbacks)

    (request,) = receiver.requests
    headers = request["headers"]
    payload = Webhook(secret).verify(request["body"], headers)
    assert payload["id"] == event.event_id == headers["webhook-id"]
    assert payload["type"] == "credits.low" and payload["data"] == {"available": 3}
    assert payload["workspace_id"] == workspace.pk
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(request["body"].replace('"available":3', '"available":4'), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(request["body"], {**headers, "webhook-id": "evt_other"})
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert (delivery.status, delivery.last_status_code, delivery.attempt_count) == ("succeeded", 200, 1)
    assert secret not in str(headers) and secret not in request["body"]


def test_rotation_signs_with_both_secrets_for_24_hours(
    team, receiver, endpoint_for, secret_registry, django_capture_on_commit_callbacks
):
    workspace, owner, _ = team
    endpoint, old = endpoint_for(workspace, owner, receiver.url, ["credits.low"])
    with time_machine.travel(START, tick=False) as clock:
        _endpoint, new = webhook_endpoint_rotate(workspace=workspace, endpoint_id=endpoint.pk, actor=owner)
        secret_registry.add(new)
        _emit(workspace, django_capture_on_commit_callbacks)
        first = receiver.requests[-1]
        assert len(first["headers"]["webhook-signature"].split(" ")) == 2
        Webhook(old).verify(first["body"], first["headers"])
        Webhook(new).verify(first["body"], first["headers"])

        clock.shift(timedelta(hours=24, seconds=1))
        _emit(workspace, django_capture_on_commit_callbacks)
        later = receiver.requests[-1]
        assert len(later["headers"]["webhook-signature"].split(" ")) == 1
        Webhook(new).verify(later["body"], later["headers"])
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(later["body"], later["headers"])


def _run_until_final(clock, delivery_id) -> list[datetime]:
    """Move the clock to each retry and let the beat sweep queue it; the attempts' times."""
    times = []
    for _ in range(20):
        delivery = WebhookDelivery.objects.get(pk=delivery_id)
        times.append(delivery.last_attempt_at)
        if delivery.status != "pending":
            return times
        clock.move_to(delivery.next_attempt_at)
        assert webhook_deliveries_sweep_task() == 1
    raise AssertionError("never finished")


def test_failures_retry_with_backoff_then_give_up_after_24_hours(
    team, receiver, endpoint_for, django_capture_on_commit_callbacks
):
    workspace, owner, _ = team
    endpoint, _secret = endpoint_for(workspace, owner, receiver.url, ["credits.low"])
    receiver.status = 500
    with time_machine.travel(START, tick=False) as clock:
        _emit(workspace, django_capture_on_commit_callbacks)
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        assert (delivery.status, delivery.last_status_code) == ("pending", 500)
        assert delivery.next_attempt_at == START + timedelta(seconds=30)
        assert webhook_deliveries_sweep_task() == 0  # not due yet: nothing sleeps, nothing is sent

        times = _run_until_final(clock, delivery.pk)

    offsets = [t - START for t in times]
    assert offsets == [
        timedelta(0),
        timedelta(seconds=30),
        timedelta(minutes=2, seconds=30),
        timedelta(minutes=12, seconds=30),
        timedelta(hours=1, minutes=12, seconds=30),
        timedelta(hours=4, minutes=12, seconds=30),
        timedelta(hours=10, minutes=12, seconds=30),
        timedelta(hours=22, minutes=12, seconds=30),
        timedelta(hours=24),
    ]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.next_attempt_at) == ("gave_up", 9, None)
    assert delivery.last_error == "HTTP 500"
    assert len(receiver.requests) == 9


def test_an_endpoint_failing_for_a_day_is_disabled_and_the_billing_contacts_emailed(
    team, receiver, endpoint_for, django_capture_on_commit_callbacks
):
    workspace, owner, _ = team
    endpoint, _secret = endpoint_for(workspace, owner, receiver.url, ["credits.low", "credits.granted"])
    receiver.status = 503
    with time_machine.travel(START, tick=False) as clock:
        _emit(workspace, django_capture_on_commit_callbacks)
        clock.shift(timedelta(hours=23))
        _emit(workspace, django_capture_on_commit_callbacks, type_="credits.granted", data={"amount": 5})
        assert WebhookEndpoint.objects.get(pk=endpoint.pk).disabled_at is None
        assert mail.outbox == []
        clock.move_to(START + timedelta(hours=24))
        webhook_deliveries_sweep_task()

        endpoint.refresh_from_db()
        assert endpoint.disabled_at == START + timedelta(hours=24)
        assert "24 hours" in endpoint.disabled_reason
        (message,) = mail.outbox
        assert message.to == [owner.email] and receiver.url in message.body
        assert not WebhookDelivery.objects.filter(endpoint=endpoint, status="pending").exists()
        sent = len(receiver.requests)
        clock.shift(timedelta(hours=1))
        assert (
            _emit(workspace, django_capture_on_commit_callbacks) is None
        )  # a disabled endpoint hears nothing
        assert webhook_deliveries_sweep_task() == 0
        assert len(receiver.requests) == sent


def test_a_success_clears_the_failing_streak(
    team, receiver, endpoint_for, django_capture_on_commit_callbacks
):
    workspace, owner, _ = team
    endpoint, _secret = endpoint_for(workspace, owner, receiver.url, ["credits.low"])
    receiver.status = 500
    with time_machine.travel(START, tick=False) as clock:
        _emit(workspace, django_capture_on_commit_callbacks)
        assert WebhookEndpoint.objects.get(pk=endpoint.pk).failing_since == START
        receiver.status = 204
        clock.shift(timedelta(seconds=30))
        webhook_deliveries_sweep_task()
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None
    assert WebhookDelivery.objects.get(endpoint=endpoint).status == "succeeded"


def test_the_target_is_checked_again_at_delivery(
    team, receiver, endpoint_for, settings, django_capture_on_commit_callbacks
):
    workspace, owner, _ = team
    endpoint, _secret = endpoint_for(workspace, owner, receiver.url, ["credits.low"])
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False

    _emit(workspace, django_capture_on_commit_callbacks)

    assert receiver.requests == []
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.status == "pending" and delivery.last_status_code is None
    assert delivery.last_error.startswith("refused:")


def test_a_delivery_runs_once_even_if_queued_twice(
    team, receiver, endpoint_for, django_capture_on_commit_callbacks
):
    workspace, owner, _ = team
    endpoint, _secret = endpoint_for(workspace, owner, receiver.url, ["credits.low"])
    _emit(workspace, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)

    assert webhook_deliver_task.delay(delivery.pk).get() is None
    assert len(receiver.requests) == 1
