"""Recovery after outages: missed Stripe events, failed events in the admin, database down."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

import httpx
import pytest
import responses
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.db import OperationalError
from django.utils import timezone

from accounts.keys import api_key_generate
from accounts.tests.factories import global_key_for
from billing import registry
from billing.models import QuotaReservation, StripeEvent, UsageCounter
from billing.services import (
    StripeEventProcessingError,
    quota_reservations_release_stale,
    stripe_event_process,
    stripe_event_store,
)
from config.celery import app
from core.services import reconciliation_run
from credits.models import CreditAccount, CreditHold, LedgerEntry
from credits.services import credit_grant
from credits.tasks import credit_holds_expire_task
from credits.tests.services.test_credit_purchase_fulfil import paid_session
from proxy.call.funding import funding_reserve
from proxy.tests.factories import plan_configure

from .conftest import bearer_client

EVENTS_URL = "https://api.stripe.com/v1/events"


@pytest.fixture
def stripe_settings(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_hardening_sync_0123456789"
    settings.STRIPE_API_BASE = ""
    return settings


def _event(event_id: str, event_type: str, obj: dict, *, created: int | None = None) -> dict:
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2026-08-26.dahlia",
        "type": event_type,
        "created": created or int(time.time()) - 4 * 86400,
        "livemode": False,
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": obj},
    }


def _page(events: list[dict], *, has_more: bool) -> dict:
    return {"object": "list", "url": "/v1/events", "has_more": has_more, "data": events}


def _sync(since: str = "5d") -> str:
    out = StringIO()
    call_command("stripe_sync_events", since=since, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.django_db
@responses.activate
def test_sync_fetches_missed_events_pages_and_fulfils_once(stripe_settings, catalog, workspace_a):
    """Outage longer than Stripe's retry window: two purchases were never delivered, one was."""
    delivered = _event(
        "evt_delivered", "checkout.session.completed", paid_session(workspace_a, session_id="cs_1")
    )
    row, _ = stripe_event_store(event=delivered)
    stripe_event_process(event=row)
    missed_1 = _event(
        "evt_missed_1", "checkout.session.completed", paid_session(workspace_a, session_id="cs_2")
    )
    missed_2 = _event(
        "evt_missed_2", "checkout.session.completed", paid_session(workspace_a, session_id="cs_3")
    )
    unknown = _event("evt_unknown", "radar.early_fraud_warning.created", {"id": "issfr_1"})
    responses.get(EVENTS_URL, json=_page([missed_2, unknown], has_more=True))
    responses.get(EVENTS_URL, json=_page([missed_1, delivered], has_more=False))

    output = _sync("5d")

    assert "4 fetched, 3 new, 3 processed, 1 already done, 0 failed" in output
    first, second = (call.request for call in responses.calls)
    assert "created%5Bgte%5D=" in first.url and "starting_after" not in first.url
    assert "starting_after=evt_unknown" in second.url
    assert first.headers["Authorization"] == "Bearer sk_test_hardening_sync_0123456789"
    assert CreditAccount.objects.get(workspace=workspace_a).balance == 1500
    assert LedgerEntry.objects.filter(kind="purchase").count() == 3
    assert StripeEvent.objects.get(stripe_event_id="evt_unknown").status == StripeEvent.Status.IGNORED

    # Run again (an operator retrying, or an overlapping window): nothing changes.
    responses.get(EVENTS_URL, json=_page([missed_2, unknown, missed_1, delivered], has_more=False))
    output = _sync("5d")

    assert "4 fetched, 0 new, 0 processed, 4 already done" in output
    assert CreditAccount.objects.get(workspace=workspace_a).balance == 1500
    assert StripeEvent.objects.count() == 4


@pytest.mark.django_db
@responses.activate
def test_sync_retries_a_failed_event_and_reports_new_failures(
    stripe_settings, catalog, workspace_a, monkeypatch
):
    event = _event("evt_flaky", "checkout.session.completed", paid_session(workspace_a, session_id="cs_9"))
    responses.get(EVENTS_URL, json=_page([event], has_more=False))

    def broken(**kwargs):
        raise RuntimeError("handler crashed")

    monkeypatch.setitem(registry._checkout_handlers, "credit_pack", broken)

    assert "1 failed" in _sync("1d")
    row = StripeEvent.objects.get(stripe_event_id="evt_flaky")
    assert row.status == StripeEvent.Status.FAILED and "handler crashed" in row.error
    assert not LedgerEntry.objects.exists()

    monkeypatch.undo()
    responses.get(EVENTS_URL, json=_page([event], has_more=False))
    assert "1 processed" in _sync("1d")
    assert StripeEvent.objects.get(stripe_event_id="evt_flaky").status == StripeEvent.Status.PROCESSED
    assert CreditAccount.objects.get(workspace=workspace_a).balance == 500


@pytest.mark.django_db
@responses.activate
def test_sync_reports_stripe_errors_without_the_secret(stripe_settings):
    responses.get(
        EVENTS_URL,
        status=401,
        json={
            "error": {
                "type": "invalid_request_error",
                "message": "Invalid API Key provided: sk_test_****6789",
            }
        },
    )

    with pytest.raises(CommandError) as excinfo:
        _sync("1d")

    assert "sk_test_hardening_sync_0123456789" not in str(excinfo.value)


@pytest.mark.parametrize("since", ["yesterday", "2999-01-01T00:00:00Z"])
def test_sync_rejects_bad_since(since, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_hardening_sync_0123456789"
    with pytest.raises(CommandError):
        _sync(since)


@pytest.mark.django_db
def test_admin_lists_failed_events_and_reprocesses_them(staff_session, catalog, workspace_a, monkeypatch):
    event = _event(
        "evt_admin", "checkout.session.completed", paid_session(workspace_a, session_id="cs_admin")
    )
    row, _ = stripe_event_store(event=event)
    monkeypatch.setitem(registry._checkout_handlers, "credit_pack", lambda **kw: 1 / 0)
    with pytest.raises(StripeEventProcessingError):
        stripe_event_process(event=row)
    monkeypatch.undo()

    page = staff_session.get("/admin/billing/stripeevent/?status__exact=failed")
    assert page.status_code == 200 and "evt_admin" in page.content.decode()

    staff_session.post(
        "/admin/billing/stripeevent/", {"action": "reprocess", "_selected_action": [row.pk]}, follow=True
    )

    row.refresh_from_db()
    assert row.status == StripeEvent.Status.PROCESSED
    assert CreditAccount.objects.get(workspace=workspace_a).balance == 500


# --- Database unavailable ----------------------------------------------------------------------


@pytest.mark.django_db
def test_database_down_health_says_so_and_the_api_answers_503(user_a, catalog, client, monkeypatch):
    api = bearer_client(user_a)
    cache.clear()  # no cached key identity: the request needs the database

    def refused(self):
        raise OperationalError('connection to server at "db" (10.0.0.5), port 5432 failed: refused')

    monkeypatch.setattr("django.db.backends.base.base.BaseDatabaseWrapper.ensure_connection", refused)

    health = client.get("/health")
    assert health.status_code == 503
    assert health.json()["checks"]["database"] == "error"
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    for response in (
        api.post("/api/proxy/v1/chat/completions", chat, format="json"),
        api.post("/api/proxy/deepseek/chat", chat, format="json"),
        api.get("/api/credits/balance"),
    ):
        assert response.status_code == 503, response.content
        assert response.json()["error"]["code"] == "service_unavailable"
        assert "10.0.0.5" not in response.content.decode()  # driver details stay in the logs
        assert response["Retry-After"]


# --- Encryption key rotation end to end -------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the proxy's database work runs in its own threads
def test_key_rotation_end_to_end_through_the_proxy(user_a, catalog, fake_upstream, settings):
    settings.FIELD_FINGERPRINT_KEY = []
    settings.SALT_KEY = ["salt-2025"]
    global_key_for(provider="deepseek", secret="sk-deepseek-operator-rotation-01")
    api = bearer_client(user_a)
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}

    settings.SALT_KEY = ["salt-2026", "salt-2025"]  # 1. the new key first
    call_command("reencrypt_provider_keys", stdout=StringIO())  # 2. re-encrypt
    settings.SALT_KEY = ["salt-2026"]  # 3. drop the old key

    response = api.post("/api/proxy/deepseek/chat", chat, format="json")
    assert response.status_code == 200, response.content
    assert fake_upstream.requests[-1]["headers"]["Authorization"] == "Bearer sk-deepseek-operator-rotation-01"
    call_command("check", databases=["default"], stdout=StringIO())  # start-up checks pass

    settings.SALT_KEY = ["a-wrong-salt"]  # a deploy with the wrong key
    with pytest.raises(SystemCheckError, match="accounts.E001"):
        call_command("check", databases=["default"], stdout=StringIO(), stderr=StringIO())
    sent = len(fake_upstream.requests)
    response = api.post("/api/proxy/deepseek/chat", chat, format="json")
    assert response.status_code == 503  # loud, and no ciphertext ever sent upstream
    assert len(fake_upstream.requests) == sent


# --- A worker killed between reserve and settle ----------------------------------------------


@pytest.mark.django_db
def test_a_worker_killed_between_reserve_and_settle_is_swept(midday, workspace_a, catalog, staff, settings):
    """The caller reserved quota and credits, then died: the sweepers free both, nothing is charged."""
    plan_configure(limits={"llm_tokens": 100, "emails": 0, "requests": None})
    credit_grant(workspace=workspace_a, amount=50, admin_user=staff)
    quota_paid = funding_reserve(
        workspace=workspace_a, endpoint="/api/proxy/deepseek/chat", meters={"llm_tokens": 80}
    )
    credit_paid = funding_reserve(
        workspace=workspace_a, endpoint="/api/proxy/deepseek/chat", meters={"llm_tokens": 80}
    )
    assert quota_paid.reservations and credit_paid.credit_hold is not None
    # ... the worker is killed here: neither funding is ever settled or released.
    counter = UsageCounter.objects.get(workspace=workspace_a, meter="llm_tokens")
    assert counter.reserved == 80
    account = CreditAccount.objects.get(workspace=workspace_a)
    assert account.held > 0

    every_five_minutes = set(range(0, 60, 5))
    assert app.conf.beat_schedule["credits-holds-expire"]["schedule"].minute == every_five_minutes
    assert app.conf.beat_schedule["quota-reservations-release-stale"]["schedule"].minute == every_five_minutes
    assert credit_holds_expire_task.delay().get() == 0  # a live call's hold is never taken away
    stale = timezone.now() - timedelta(seconds=settings.STALE_RESERVATION_SECONDS + 1)
    CreditHold.objects.update(created_at=stale)  # minutes later, not an hour
    assert credit_holds_expire_task.delay().get() == 1
    assert quota_reservations_release_stale() == 0  # nor a live call's quota
    QuotaReservation.objects.update(created_at=stale)
    assert quota_reservations_release_stale() == 1

    account.refresh_from_db()
    counter.refresh_from_db()
    assert (account.balance, account.held) == (50, 0)
    assert (counter.used, counter.reserved) == (0, 0)
    assert not QuotaReservation.objects.filter(status="held").exists()
    assert reconciliation_run() == []


def test_real_server_with_the_database_unreachable_answers_503():
    """A real ASGI server process whose PostgreSQL refuses connections: /health and the API say
    503, never 500, and the body carries no connection details."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},  # Redis: the suite's own
        "DATABASE_URL": "postgres://tollgate@127.0.0.1:1/tollgate",  # nothing listens on port 1
        "DATABASE_POOL": "false",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--port",
            str(port),
            "--log-level",
            "error",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"{base}/health", timeout=5)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("server did not start")
        headers = {"Authorization": f"Bearer {api_key_generate()}"}  # well formed: needs the database
        chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        responses_ = [
            httpx.post(f"{base}/api/proxy/v1/chat/completions", json=chat, headers=headers, timeout=10),
            httpx.get(f"{base}/api/credits/balance", headers=headers, timeout=10),
        ]
    finally:
        server.terminate()
        server.wait(timeout=10)

    assert health.status_code == 503 and health.json()["checks"]["database"] == "error"
    for response in responses_:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "service_unavailable"
        assert "127.0.0.1:1" not in response.text and "tollgate@" not in response.text
