"""Events emitted by the other apps reach subscribed endpoints only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from accounts.tests.factories import StaffUserFactory
from billing.services import quota_reserve, quota_settle
from credits.services import credit_grant, credit_hold, credit_hold_settle

pytestmark = pytest.mark.django_db


def test_a_credit_grant_reaches_a_subscribed_endpoint_only(
    team, receiver, endpoint_for, django_capture_on_commit_callbacks
):
    workspace, owner, _ = team
    endpoint_for(workspace, owner, receiver.url + "/granted", ["credits.granted"])
    endpoint_for(workspace, owner, receiver.url + "/payments", ["payment.failed"])

    with django_capture_on_commit_callbacks(execute=True):
        credit_grant(workspace=workspace, amount=40, admin_user=StaffUserFactory())

    assert [request["path"] for request in receiver.requests] == ["/hook/granted"]
    (payload,) = receiver.payloads()
    assert payload["type"] == "credits.granted"
    assert payload["data"] == {"amount": 40, "balance": 40}


def test_the_quota_alert_emits_threshold_reached(
    catalog, team, receiver, endpoint_for, django_capture_on_commit_callbacks
):
    workspace, owner, _ = team
    endpoint_for(workspace, owner, receiver.url + "/quota", ["quota.threshold_reached"])
    endpoint_for(workspace, owner, receiver.url + "/other", ["credits.low"])
    now = datetime(2026, 4, 10, tzinfo=UTC)

    with django_capture_on_commit_callbacks(execute=True):
        reservation = quota_reserve(workspace=workspace, meter="llm_tokens", amount=85_000, now=now)
        quota_settle(reservation=reservation, actual=85_000, now=now)

    assert {request["path"] for request in receiver.requests} == {"/hook/quota"}
    (payload,) = receiver.payloads()
    assert payload["type"] == "quota.threshold_reached"
    assert payload["data"]["threshold"] == 80 and payload["data"]["meter"] == "llm_tokens"


def test_spending_the_last_credit_emits_low_and_depleted(
    team, receiver, endpoint_for, django_capture_on_commit_callbacks
):
    workspace, owner, _ = team
    endpoint_for(workspace, owner, receiver.url, ["credits.low", "credits.depleted"])
    credit_grant(workspace=workspace, amount=30, admin_user=StaffUserFactory())

    with django_capture_on_commit_callbacks(execute=True):
        hold = credit_hold(workspace=workspace, amount=30)
        credit_hold_settle(hold=hold, actual=30, idempotency_key="spend-all")

    assert sorted(payload["type"] for payload in receiver.payloads()) == ["credits.depleted", "credits.low"]
