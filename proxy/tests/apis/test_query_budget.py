"""Query budget of the hot path: regressions show up as a count, not as a timing.

One routed, operator-paid call (warm caches) on PostgreSQL: the key's user, the provider key,
the quota reservation (one statement for every meter), then ONE statement for the settle of
every meter, the usage event, its rollup and the day's spend (no explicit transaction).
"""

import pytest
from django.db import connection

from billing.models import QuotaReservation, UsageCounter
from proxy.models import DailySpend, UsageDailyRollup, UsageEvent

from ..factories import global_key_set, plan_configure

# The budget is PostgreSQL's (production); SQLite, the embedded default, runs per-meter statements.
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

URL = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}
TARGET = 8


@pytest.fixture
def warm_client(midday, caller, fake_upstream, same_thread_db):
    plan_configure(weights={"openrouter": 100})
    global_key_set("openrouter")
    user, _plaintext, client = caller
    assert client.post(URL, BODY, format="json").status_code == 200  # warm key, plan and catalogue caches
    return user, client


def test_one_proxied_call_meets_the_query_budget(warm_client, django_assert_max_num_queries):
    user, client = warm_client
    with django_assert_max_num_queries(TARGET) as captured:
        response = client.post(URL, BODY, format="json")

    assert response.status_code == 200
    assert response.json()["quota"]["used"] == 50  # two calls of 25 tokens
    # The capture does see the view's database blocks, and everything was written.
    assert len(captured.captured_queries) >= 4
    assert UsageEvent.objects.filter(user=user).count() == 2
    assert UsageDailyRollup.objects.get(user=user).requests == 2
    assert DailySpend.objects.get().spent_usd > 0
    assert not QuotaReservation.objects.filter(user=user, status="held").exists()
    assert dict(UsageCounter.objects.filter(user=user).values_list("meter", "used")) == {
        "llm_tokens": 50,
        "requests": 2,
    }


def test_postgresql_path_is_four_statements(warm_client, django_assert_max_num_queries):
    _user, client = warm_client
    assert connection.vendor == "postgresql"
    with django_assert_max_num_queries(TARGET) as captured:
        client.post(URL, BODY, format="json")

    statements = [q["sql"].split(None, 1)[0].upper() for q in captured.captured_queries if q["sql"]]
    # user, provider key, reserve (WITH …), settle + event + rollup + spend (WITH …)
    assert statements == ["SELECT", "SELECT", "WITH", "WITH"], statements
