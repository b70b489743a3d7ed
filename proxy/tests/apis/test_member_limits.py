"""A member's monthly spend cap, shared by every key they created in the workspace, enforced in
the same reservation as the keys' own limits (PostgreSQL, Redis, the real async view and a fake
provider): the 429 ``member_limit_exceeded``, exactness under a race across two keys, the
release of a failed call, the alert, and a cap changed while the keys' identities are cached."""

import threading

import httpx
import pytest

from accounts.keys import api_key_hash
from accounts.models import ApiKey, Membership
from accounts.services import api_key_limits_set, workspace_create
from accounts.services.member_limits import membership_limits_set
from accounts.tests.factories import member_add
from billing.models import KeyUsageCounter, KeyUsageHold, Plan
from credits.models import EndpointCost
from notifications.models import ThresholdState, WebhookEndpoint, WebhookEvent
from proxy.call import prepare
from proxy.call.charge import charge_rates_invalidate
from proxy.models import UsageEvent

from ..factories import global_key_set, key_for, plan_configure

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

URL = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}
UNLIMITED = {"requests": None, "llm_tokens": None, "emails": 0}


@pytest.fixture
def priced(midday, free_plan, catalog, fake_upstream, monkeypatch, settings):
    """Two credits a call, worth 0.01 EUR a credit, every call served by the fake provider."""
    monkeypatch.setattr(prepare, "_budget_refused_at", {})
    settings.PROXY_QUOTA_BATCH = 0
    global_key_set("openrouter")
    Plan.objects.filter(code="free").update(credit_price_micros=10_000)
    plan_configure(weights={"openrouter": 100}, limits=UNLIMITED)
    EndpointCost.objects.update_or_create(
        endpoint=URL,
        defaults={"is_active": True, "per_call": 2, "per_1000_units": 0, "unit": EndpointCost.Unit.NONE},
    )
    charge_rates_invalidate()
    yield fake_upstream
    charge_rates_invalidate()


def _post(base: str, key: str) -> httpx.Response:
    return httpx.post(base + URL, json=BODY, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _cap(user, *limits, workspace=None) -> Membership:
    workspace = workspace or user.personal_workspace
    return membership_limits_set(workspace=workspace, actor=user, user_id=user.pk, limits=list(limits))


def _member_counter(membership: Membership, unit: str) -> tuple[int, int]:
    counter = KeyUsageCounter.objects.get(membership=membership, unit=unit, window="month")
    return counter.used, counter.reserved


def test_the_cap_counts_every_key_of_the_member_and_refuses_the_call_that_would_pass_it(priced, api_client):
    user, first = key_for()
    _user, second = key_for(user)
    membership = _cap(user, {"unit": "credits", "amount": 5})

    for key in (first, second):
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        assert api_client.post(URL, BODY, format="json").status_code == 200  # 2 + 2 of 5 credits
    refused = api_client.post(URL, BODY, format="json")

    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["code"], error["unit"], error["window"], error["limit"], error["used"]) == (
        "member_limit_exceeded",
        "credits",
        "month",
        5,
        4,
    )
    assert error["resets_at"].endswith("Z")
    assert "Retry-After" in refused.headers
    assert _member_counter(membership, "credits") == (4, 0)
    assert len(priced.requests) == 2
    # The keys have no limits of their own: only the member's counter exists.
    assert not KeyUsageCounter.objects.filter(api_key__isnull=False).exists()


def test_a_money_cap_counts_the_charge_in_the_plan_currency(priced, api_client):
    user, key = key_for()
    membership = _cap(user, {"unit": "money", "amount": 5})  # 0.05 EUR; a call is 0.02 EUR
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    assert api_client.post(URL, BODY, format="json").status_code == 200
    assert api_client.post(URL, BODY, format="json").status_code == 200
    refused = api_client.post(URL, BODY, format="json")

    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["code"], error["limit"], error["used"]) == ("member_limit_exceeded", 5, 4)
    assert "0.05 EUR" in error["message"]
    assert _member_counter(membership, "money") == (40_000, 0)  # micros


def test_a_failed_call_gives_the_members_hold_back(priced, api_client):
    user, key = key_for()
    membership = _cap(user, {"unit": "credits", "amount": 5})
    priced.mode = "500"
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    assert api_client.post(URL, BODY, format="json").status_code == 502

    assert _member_counter(membership, "credits") == (0, 0)
    assert set(KeyUsageHold.objects.values_list("status", flat=True)) == {"released"}


def test_a_key_limit_and_the_member_cap_hold_together_and_the_tighter_one_answers(priced, api_client):
    user, key = key_for()
    api_key = ApiKey.objects.get(key_hash=api_key_hash(key))
    api_key_limits_set(
        workspace=user.personal_workspace,
        key_id=api_key.pk,
        limits=[{"unit": "credits", "window": "day", "amount": 100}],
    )
    _cap(user, {"unit": "credits", "amount": 2})
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    assert api_client.post(URL, BODY, format="json").status_code == 200
    refused = api_client.post(URL, BODY, format="json")

    assert refused.json()["error"]["code"] == "member_limit_exceeded"
    # All or nothing: the refused call left no hold on the key's own counter either.
    key_counter = KeyUsageCounter.objects.get(api_key=api_key)
    assert (key_counter.used, key_counter.reserved) == (2, 0)


def test_thirty_calls_across_two_keys_racing_for_ten_credits_exactly_five_succeed(
    priced, live_asgi_fast, settings
):
    settings.PROXY_QUOTA_BATCH = 8  # the worker's spare quota pool is on: the cap stays exact
    user, first = key_for()
    _user, second = key_for(user)
    membership = _cap(user, {"unit": "credits", "amount": 10})
    barrier = threading.Barrier(30)
    results, lock = [], threading.Lock()

    def worker(key):
        barrier.wait()
        response = _post(live_asgi_fast, key)
        with lock:
            results.append(response)

    threads = [threading.Thread(target=worker, args=(first if i % 2 else second,)) for i in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 5 + [429] * 25, [r.text for r in results if r.status_code not in (200, 429)]
    assert {r.json()["error"]["code"] for r in results if r.status_code == 429} == {"member_limit_exceeded"}
    assert _member_counter(membership, "credits") == (10, 0)
    assert not KeyUsageHold.objects.filter(status="held").exists()
    assert sum(UsageEvent.objects.values_list("charge_credits", flat=True)) == 10


def test_raising_the_cap_takes_effect_on_the_next_call_though_the_identity_is_cached(priced, api_client):
    user, key = key_for()
    _cap(user, {"unit": "credits", "amount": 2})
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api_client.post(URL, BODY, format="json").status_code == 200
    assert api_client.post(URL, BODY, format="json").status_code == 429

    _cap(user, {"unit": "credits", "amount": 4})
    assert api_client.post(URL, BODY, format="json").status_code == 200

    _cap(user)  # lifted
    assert api_client.post(URL, BODY, format="json").status_code == 200


def test_reaching_the_cap_alerts_once_naming_the_member(priced, team_workspace_with_developer):
    workspace, owner, developer, api_client = team_workspace_with_developer
    WebhookEndpoint.objects.create(
        workspace=workspace,
        url="https://hooks.example.com/t",
        events=["member.limit_reached"],
        secret="whsec_x",
    )
    membership_limits_set(
        workspace=workspace, actor=owner, user_id=developer.pk, limits=[{"unit": "credits", "amount": 5}]
    )

    for _ in range(2):
        assert api_client.post(URL, BODY, format="json").status_code == 200  # 4 of 5 credits: 80 %

    assert ThresholdState.objects.filter(
        subject=f"member:{developer.pk}:credits:month", threshold=80
    ).exists()
    events = [event.data for event in WebhookEvent.objects.filter(type="member.limit_reached")]
    assert [(e["user_id"], e["threshold"], e["used"], e["limit"]) for e in events] == [
        (developer.pk, 80, 4, 5)
    ]


@pytest.fixture
def team_workspace_with_developer(db, api_client):
    """A team workspace, its owner, and a developer calling with their own key."""
    owner, _ = key_for()
    workspace = workspace_create(user=owner, name="Team")
    developer = member_add(workspace, role="developer")
    _developer, plaintext = key_for(developer, workspace=workspace)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return workspace, owner, developer, api_client
