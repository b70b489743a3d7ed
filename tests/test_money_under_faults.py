"""Money under concurrency and faults: 100 concurrent callers against a live ASGI server on
PostgreSQL + Redis, near their quota, credit and budget limits, with upstream failures and
client disconnects mixed in. One of the workspaces is a team whose two members' keys draw on the
same quota and credits at once. Afterwards nothing is overspent, nothing is still held, and every
cached number equals the sum of the rows it summarises.
"""

from __future__ import annotations

import random
import threading
import time
from decimal import Decimal

import httpx
import pytest
from django.db.models import Sum

from accounts.models import Role
from accounts.tests.factories import UserFactory, api_key_for, member_add, team_workspace
from billing.models import QuotaReservation, UsageCounter
from core.models import ReconciliationDrift
from core.services import reconciliation_run
from credits.models import CreditAccount, CreditHold, EndpointCost, LedgerEntry
from credits.services import credit_grant
from proxy.models import DailySpend, UsageEvent
from proxy.tests.factories import global_key_set, plan_configure
from proxy.tests.live import uvicorn_served

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

URL = "/api/proxy/v1/chat/completions"
CALLERS = 100
TOKEN_LIMIT = 300  # a call reserves ~50 tokens and uses 25 (or fewer streamed): the quota runs out
CREDITS = 3  # then credits pay for a few more calls, then 402/429
BUDGET_USD = Decimal("0.02")


@pytest.fixture
def live_server_url(transactional_db):
    """Tollgate under uvicorn (ASGI, as in production) in a thread."""
    with uvicorn_served() as (url, _thread):
        yield url


def _caller(base_url: str, plaintext: str, kind: str, barrier: threading.Barrier, results: list, lock):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 40}
    headers = {"Authorization": f"Bearer {plaintext}"}
    barrier.wait()
    try:
        with httpx.Client(timeout=20) as http:
            if kind == "disconnect":
                with http.stream(
                    "POST", f"{base_url}{URL}", headers=headers, json={**body, "stream": True}
                ) as r:
                    status = r.status_code
                    received = b""
                    for chunk in r.iter_bytes():
                        received += chunk
                        if received.count(b"data:") >= 2:
                            break  # the client goes away mid-stream
            else:
                status = http.post(f"{base_url}{URL}", headers=headers, json=body).status_code
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    with lock:
        results.append((kind, status))


def _settled(timeout: float = 20.0) -> None:
    """Disconnected streams finish settling server-side after the client left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            not QuotaReservation.objects.filter(status="held").exists()
            and not CreditHold.objects.filter(status="held").exists()
        ):
            return
        time.sleep(0.1)


def test_hundred_callers_with_faults_never_overspend(
    midday, catalog, fake_upstream, live_server_url, settings, staff
):
    settings.DAILY_BUDGET_USD = BUDGET_USD
    settings.PROXY_UPSTREAM_TIMEOUT = 2.0
    plan_configure(
        weights={"deepseek": 100},
        limits={"llm_tokens": TOKEN_LIMIT, "emails": 0, "requests": None},
        default_max_tokens=40,
    )
    global_key_set("deepseek", "sk-operator-deepseek-faults-0123")
    EndpointCost.objects.update_or_create(
        endpoint=URL, defaults={"per_call": 1, "per_1000_units": 0, "unit": EndpointCost.Unit.TOKENS}
    )
    workspaces = [UserFactory().personal_workspace for _ in range(3)]
    team = team_workspace(name="Shared quota")
    workspaces.append(team)
    keys = []
    for workspace in workspaces:
        credit_grant(workspace=workspace, amount=CREDITS, admin_user=staff)
        for member in [m.user for m in workspace.memberships.select_related("user")]:
            keys.append(api_key_for(member, workspace=workspace)[1])
    keys.append(api_key_for(member_add(team, role=Role.DEVELOPER), workspace=team)[1])
    fake_upstream.stream_chunks = 30
    fake_upstream.chunk_delay = 0.01
    rng = random.Random(9)
    rng_lock = threading.Lock()

    def mode_for(path: str) -> str:  # upstream failures mixed in (seeded)
        with rng_lock:
            return rng.choice(["ok"] * 6 + ["500", "503", "garbage", "timeout"])

    fake_upstream.sleep_seconds = 3.0  # past PROXY_UPSTREAM_TIMEOUT: a 504
    fake_upstream.mode_for = mode_for
    kinds = ["plain"] * 3 + ["disconnect"]
    barrier = threading.Barrier(CALLERS)
    results: list = []
    lock = threading.Lock()
    threads = [
        threading.Thread(
            target=_caller,
            args=(live_server_url, keys[i % len(keys)], kinds[i % len(kinds)], barrier, results, lock),
        )
        for i in range(CALLERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    _settled()

    statuses = [status for _kind, status in results]
    assert len(results) == CALLERS
    assert 500 not in statuses, results
    assert set(statuses) <= {200, 402, 429, 502, 503, 504}, results
    assert statuses.count(200) > 0 and any(s in (402, 429) for s in statuses)  # limits were reached

    # Nothing held forever.
    assert not QuotaReservation.objects.filter(status="held").exists()
    assert not CreditHold.objects.filter(status="held").exists()
    for workspace in workspaces:
        # Quota: never past the limit; used == the settled reservations == the usage events.
        counter = UsageCounter.objects.get(workspace=workspace, meter="llm_tokens")
        assert counter.reserved == 0
        assert counter.used <= TOKEN_LIMIT
        settled = QuotaReservation.objects.filter(counter=counter, status="settled").aggregate(
            s=Sum("actual")
        )
        assert counter.used == (settled["s"] or 0)
        quota_paid = UsageEvent.objects.filter(workspace=workspace, credits_charged=0).aggregate(
            s=Sum("total_tokens")
        )
        assert counter.used == (quota_paid["s"] or 0)
        # Credits: never negative; balance == sum(ledger); charged == what the events say.
        account = CreditAccount.objects.get(workspace=workspace)
        ledger = LedgerEntry.objects.filter(workspace=workspace).aggregate(s=Sum("amount"))["s"]
        assert 0 <= account.balance == ledger and account.held == 0
        charged = UsageEvent.objects.filter(workspace=workspace).aggregate(s=Sum("credits_charged"))["s"] or 0
        assert account.balance == CREDITS - charged
    # Budget: never past the cap; the durable row equals the events' cost.
    spent = DailySpend.objects.aggregate(s=Sum("spent_usd"))["s"] or Decimal(0)
    assert spent <= BUDGET_USD
    assert spent == (UsageEvent.objects.aggregate(s=Sum("cost_usd"))["s"] or Decimal(0))
    # And the nightly reconciliation agrees: no drift anywhere.
    assert reconciliation_run() == []
    assert not ReconciliationDrift.objects.exists()
