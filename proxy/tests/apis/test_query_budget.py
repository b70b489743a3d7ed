"""Query budget of the hot path: regressions show up as a count, not as a timing.

One routed, operator-paid call (warm caches): every statement it sends, on the async pool of the
call path and on Django's connection alike, is counted. The quota reservation is one statement
for every meter (or none, when the worker holds a spare from the previous call's batch), and
the settle of every meter, the usage event, its rollup and the day's spend is ONE statement.
"""

from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import QuotaReservation, UsageCounter
from proxy.models import DailySpend, UsageDailyRollup, UsageEvent

from ..factories import global_key_set, plan_configure

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}
TARGET = 4


@pytest.fixture
def warm_client(midday, caller, fake_upstream, same_thread_db):
    plan_configure(weights={"openrouter": 100})
    global_key_set("openrouter")
    user, _plaintext, client = caller
    assert client.post(URL, BODY, format="json").status_code == 200  # warm key, plan and catalogue caches
    return user, client


@contextmanager
def statements_sent(monkeypatch):
    """The text of every statement sent inside the block: the call path's async pool and
    Django's connection alike."""
    sent: list[str] = []
    original = psycopg.AsyncCursor.execute  # AsyncRawCursor's too: it inherits it

    async def execute(self, query, *args, **kwargs):
        sent.append(query.decode() if isinstance(query, bytes) else str(query))
        return await original(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", execute)
    with CaptureQueriesContext(connection) as django_side:
        yield sent
    sent.extend(q["sql"] for q in django_side.captured_queries)
    monkeypatch.undo()


def test_one_proxied_call_meets_the_query_budget(warm_client, monkeypatch):
    user, client = warm_client
    workspace = user.personal_workspace
    with statements_sent(monkeypatch) as sent:
        response = client.post(URL, BODY, format="json")

    assert response.status_code == 200
    verbs = [text.split(None, 1)[0].upper() for text in sent if text.strip()]
    # At most: the key's user, the provider key, the reserve (none when a spare is held) and the
    # ONE settle statement (WITH …: every meter, the event, its rollup and the day's spend).
    assert len(verbs) <= TARGET, "\n---\n".join(t[:160] for t in sent)
    assert verbs.count("WITH") >= 1, sent
    assert response.json()["quota"]["used"] == 50  # two calls of 25 tokens
    assert UsageEvent.objects.filter(workspace=workspace).count() == 2
    assert UsageDailyRollup.objects.get(workspace=workspace).requests == 2
    assert DailySpend.objects.get().spent_usd > 0
    assert not QuotaReservation.objects.filter(workspace=workspace, status="held").exists()
    assert dict(UsageCounter.objects.filter(workspace=workspace).values_list("meter", "used")) == {
        "llm_tokens": 50,
        "requests": 2,
    }
