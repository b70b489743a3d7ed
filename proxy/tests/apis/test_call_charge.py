"""Every call's customer-facing charge (credits at the endpoint's rate, and money at the plan's
price per credit) on its usage event, and the key limits in credits and money that count it
(PostgreSQL, Redis, the real async view and a fake provider)."""

import pytest

from accounts.keys import api_key_hash
from accounts.models import ApiKey
from accounts.services import api_key_limits_set
from accounts.tests.factories import UserFactory
from billing.models import KeyUsageCounter, KeyUsageHold, Plan
from credits.models import CreditPack, EndpointCost
from credits.selectors import credit_balance_get
from credits.services import credit_grant
from proxy.call import prepare
from proxy.call.charge import charge_rates_invalidate
from proxy.models import UsageEvent

from ..factories import global_key_set, plan_configure
from .test_key_limits import _fire

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

URL = "/api/proxy/v1/chat/completions"
SEND = "/api/proxy/instantly/send"
EMAIL_BODY = {"to": "prospect@example.com", "subject": "Hello", "body": "Hello from Tollgate"}
CHAT = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}
TOKENS = 25  # what the fake provider reports for BODY
UNLIMITED = {"requests": None, "llm_tokens": None, "emails": 0}


def _key(plaintext: str) -> ApiKey:
    return ApiKey.objects.get(key_hash=api_key_hash(plaintext))


def _limit(plaintext: str, *limits) -> ApiKey:
    api_key = _key(plaintext)
    return api_key_limits_set(workspace=api_key.workspace, key_id=api_key.pk, limits=list(limits))


def _counter(api_key: ApiKey, unit: str, window: str = "day") -> tuple[int, int]:
    counter = KeyUsageCounter.objects.get(api_key=api_key, unit=unit, window=window)
    return counter.used, counter.reserved


def _chat_cost(**fields) -> EndpointCost:
    cost, _ = EndpointCost.objects.update_or_create(endpoint=CHAT, defaults={"is_active": True, **fields})
    charge_rates_invalidate()
    return cost


def _priced(*, credit_price_micros: int, limits: dict | None = None) -> Plan:
    Plan.objects.filter(code="free").update(credit_price_micros=credit_price_micros)
    return plan_configure(weights={"openrouter": 100}, limits=limits or UNLIMITED)  # a new catalogue version


@pytest.fixture
def routed(midday, caller, fake_upstream, monkeypatch, settings):
    monkeypatch.setattr(prepare, "_budget_refused_at", {})
    settings.PROXY_QUOTA_BATCH = 0
    global_key_set("openrouter")
    charge_rates_invalidate()
    yield caller
    charge_rates_invalidate()


def test_a_quota_paid_call_is_charged_at_the_endpoint_rate_and_the_plan_price(routed):
    user, _plaintext, client = routed
    _priced(credit_price_micros=12_500)  # 0.0125 EUR a credit: the plan's markup
    _chat_cost(per_call=1, per_1000_units=200, unit=EndpointCost.Unit.TOKENS)

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 200, response.json()
    event = UsageEvent.objects.get(workspace=user.personal_workspace)
    # 1 + ceil(200 × 25 / 1000) = 6 credits, worth 6 × 0.0125 = 0.075 EUR; the quota paid it.
    assert (event.charge_credits, event.charge_micros, event.charge_currency) == (6, 75_000, "eur")
    assert event.credits_charged == 0


def test_a_credit_paid_call_is_charged_what_was_debited(routed):
    user, _plaintext, client = routed
    workspace = user.personal_workspace
    _priced(credit_price_micros=10_000, limits={"requests": None, "llm_tokens": 10, "emails": 0})
    _chat_cost(per_call=1, per_1000_units=200, unit=EndpointCost.Unit.TOKENS)
    credit_grant(workspace=workspace, amount=100, admin_user=UserFactory(is_staff=True))

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 200, response.json()
    event = UsageEvent.objects.get(workspace=workspace)
    assert (event.credits_charged, event.charge_credits, event.charge_micros) == (6, 6, 60_000)
    assert credit_balance_get(workspace=workspace).balance == 94


def test_without_a_plan_price_a_credit_is_worth_the_smallest_packs_list_price(routed):
    user, _plaintext, client = routed
    _priced(credit_price_micros=0)
    _chat_cost(per_call=2, per_1000_units=0, unit=EndpointCost.Unit.NONE)
    CreditPack.objects.create(code="small", name="Small", credits=100, price_minor=500, currency="eur")
    CreditPack.objects.create(code="big", name="Big", credits=1000, price_minor=4000, currency="eur")
    CreditPack.objects.create(code="usd", name="USD", credits=10, price_minor=100, currency="usd")

    assert client.post(URL, BODY, format="json").status_code == 200

    event = UsageEvent.objects.get(workspace=user.personal_workspace)
    # 5.00 EUR for 100 credits: 0.05 EUR a credit, 2 credits a call.
    assert (event.charge_credits, event.charge_micros, event.charge_currency) == (2, 100_000, "eur")


def test_a_failed_call_is_charged_nothing(routed, fake_upstream):
    user, _plaintext, client = routed
    _priced(credit_price_micros=10_000)
    _chat_cost(per_call=2, per_1000_units=0, unit=EndpointCost.Unit.NONE)
    fake_upstream.mode = "500"

    assert client.post(URL, BODY, format="json").status_code == 502

    event = UsageEvent.objects.get(workspace=user.personal_workspace)
    assert (event.status_code, event.charge_credits, event.charge_micros) == (502, 0, 0)


def test_a_credits_limit_holds_the_most_a_call_can_cost_and_settles_to_its_charge(routed):
    _user, plaintext, client = routed
    _priced(credit_price_micros=10_000)
    _chat_cost(per_call=0, per_1000_units=1000, unit=EndpointCost.Unit.TOKENS)  # a credit a token
    api_key = _limit(plaintext, {"unit": "credits", "window": "month", "amount": 1000})

    assert client.post(URL, BODY, format="json").status_code == 200

    assert _counter(api_key, "credits", "month") == (TOKENS, 0)
    hold = KeyUsageHold.objects.get()
    assert (hold.status, hold.actual) == ("settled", TOKENS)
    assert hold.amount > TOKENS  # the prompt estimate + max_tokens was held


def test_a_credits_limit_refuses_the_call_that_would_pass_it(routed, fake_upstream):
    _user, plaintext, client = routed
    _priced(credit_price_micros=10_000)
    _chat_cost(per_call=2, per_1000_units=0, unit=EndpointCost.Unit.NONE)
    api_key = _limit(plaintext, {"unit": "credits", "window": "day", "amount": 5})

    assert client.post(URL, BODY, format="json").status_code == 200
    assert client.post(URL, BODY, format="json").status_code == 200  # 4 of 5 credits
    refused = client.post(URL, BODY, format="json")

    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["code"], error["unit"], error["window"], error["limit"], error["used"]) == (
        "key_limit_exceeded",
        "credits",
        "day",
        5,
        4,
    )
    assert "Retry-After" in refused.headers
    assert "x-should-retry" not in refused.headers
    assert _counter(api_key, "credits") == (4, 0)
    assert len(fake_upstream.requests) == 2


def test_a_money_limit_counts_the_charge_in_the_plan_currency(routed, fake_upstream):
    _user, plaintext, client = routed
    _priced(credit_price_micros=7_500)  # 0.0075 EUR a credit: 1.5 cents a call
    _chat_cost(per_call=2, per_1000_units=0, unit=EndpointCost.Unit.NONE)
    api_key = _limit(plaintext, {"unit": "money", "window": "total", "amount": 4})  # 0.04 EUR

    assert client.post(URL, BODY, format="json").status_code == 200  # 1.5 cents
    assert client.post(URL, BODY, format="json").status_code == 200  # 3 cents
    refused = client.post(URL, BODY, format="json")  # 4.5 cents would pass 4

    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["unit"], error["window"], error["limit"], error["used"], error["resets_at"]) == (
        "money",
        "total",
        4,
        3,
        None,
    )
    assert "0.04 EUR" in error["message"]
    assert refused.headers["x-should-retry"] == "false"
    assert _counter(api_key, "money", "total") == (30_000, 0)  # counted in micros: exact
    assert list(UsageEvent.objects.filter(status_code=200).values_list("charge_micros", flat=True)) == [
        15_000,
        15_000,
    ]


def test_a_failed_call_releases_its_credit_and_money_holds(routed, fake_upstream):
    _user, plaintext, client = routed
    _priced(credit_price_micros=10_000)
    _chat_cost(per_call=2, per_1000_units=0, unit=EndpointCost.Unit.NONE)
    api_key = _limit(
        plaintext,
        {"unit": "credits", "window": "day", "amount": 10},
        {"unit": "money", "window": "month", "amount": 100},
    )
    fake_upstream.mode = "500"

    assert client.post(URL, BODY, format="json").status_code == 502

    assert _counter(api_key, "credits") == (0, 0)
    assert _counter(api_key, "money", "month") == (0, 0)
    assert set(KeyUsageHold.objects.values_list("status", flat=True)) == {"released"}


def test_thirty_calls_racing_for_ten_credits_exactly_five_succeed(
    routed, fake_upstream, live_asgi_fast, settings
):
    settings.PROXY_QUOTA_BATCH = 8  # the worker's spare pool is on: the key limit stays exact
    _user, plaintext, _client = routed
    _priced(credit_price_micros=10_000)
    _chat_cost(per_call=2, per_1000_units=0, unit=EndpointCost.Unit.NONE)
    api_key = _limit(plaintext, {"unit": "credits", "window": "day", "amount": 10})

    results = _fire(live_asgi_fast, plaintext, 30)

    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 5 + [429] * 25, [r.text for r in results if r.status_code not in (200, 429)]
    assert {r.json()["error"]["code"] for r in results if r.status_code == 429} == {"key_limit_exceeded"}
    assert _counter(api_key, "credits") == (10, 0)
    assert not KeyUsageHold.objects.filter(status="held").exists()
    assert len(fake_upstream.requests) == 5
    assert sum(UsageEvent.objects.values_list("charge_credits", flat=True)) == 10


def test_thirty_calls_racing_for_ten_cents_exactly_five_succeed(
    routed, fake_upstream, live_asgi_fast, settings
):
    settings.PROXY_QUOTA_BATCH = 8
    _user, plaintext, _client = routed
    _priced(credit_price_micros=10_000)  # 0.01 EUR a credit: 2 cents a call
    _chat_cost(per_call=2, per_1000_units=0, unit=EndpointCost.Unit.NONE)
    api_key = _limit(plaintext, {"unit": "money", "window": "month", "amount": 10})

    results = _fire(live_asgi_fast, plaintext, 30)

    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 5 + [429] * 25, [r.text for r in results if r.status_code not in (200, 429)]
    assert _counter(api_key, "money", "month") == (100_000, 0)  # 10 cents, in micros
    assert not KeyUsageHold.objects.filter(status="held").exists()
    assert sum(UsageEvent.objects.values_list("charge_micros", flat=True)) == 100_000


def test_an_email_counts_its_charge_on_money_limits_but_not_on_request_limits(routed, fake_upstream):
    _user, plaintext, client = routed
    global_key_set("instantly")
    _priced(credit_price_micros=10_000, limits={"requests": None, "llm_tokens": None, "emails": None})
    _chat_cost(per_call=0, per_1000_units=0, unit=EndpointCost.Unit.NONE)  # chat is free here
    EndpointCost.objects.update_or_create(
        endpoint=SEND, defaults={"is_active": True, "per_call": 3, "per_1000_units": 0, "unit": "none"}
    )
    charge_rates_invalidate()
    api_key = _limit(
        plaintext,
        {"unit": "requests", "window": "day", "amount": 1},
        {"unit": "money", "window": "month", "amount": 5},  # 0.05 EUR: one 3-cent email fits
    )
    assert client.post(URL, BODY, format="json").status_code == 200  # the day's one request
    assert client.post(URL, BODY, format="json").json()["error"]["unit"] == "requests"

    sent = client.post(SEND, EMAIL_BODY, format="json")  # a spent request limit does not stop it
    refused = client.post(SEND, EMAIL_BODY, format="json")

    assert sent.status_code == 200, sent.json()
    assert (refused.status_code, refused.json()["error"]["unit"]) == (429, "money")
    assert _counter(api_key, "money", "month") == (30_000, 0)
    assert _counter(api_key, "requests") == (1, 0)  # emails are not requests
