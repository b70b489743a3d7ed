import json
from io import StringIO

import pytest
import responses
from django.core.management import call_command

import billing.tests.stripe_events as stripe_events
from billing.models import Plan, PlanQuota, StripeEvent, Subscription
from config.celery import app

from .factories import UserFactory

pytestmark = pytest.mark.django_db


def test_seed_catalog_installs_the_issue_table_and_is_idempotent():
    PlanQuota.objects.all().delete()
    Plan.objects.all().delete()
    call_command("seed_catalog")
    call_command("seed_catalog")
    assert Plan.objects.count() == 6
    quotas = {(q.plan.code, q.meter): (q.period, q.limit) for q in PlanQuota.objects.select_related("plan")}
    assert quotas[("free", "llm_tokens")] == ("month", 100_000)
    assert quotas[("student", "requests")] == ("day", 200)
    assert quotas[("pro", "emails")] == ("month", 1_000)
    assert quotas[("scale", "requests")] == ("day", None)
    student = Plan.objects.get(code="student")
    assert (student.price_minor, student.currency, student.routing_weights) == (
        1590,
        "eur",
        {"groq": 85, "openrouter": 15},
    )


def test_seed_catalog_keeps_operator_edits():
    Plan.objects.filter(code="pro").update(price_minor=5900)
    PlanQuota.objects.filter(plan__code="pro", meter="emails").update(limit=2_000)
    call_command("seed_catalog")
    assert Plan.objects.get(code="pro").price_minor == 5900
    assert PlanQuota.objects.get(plan__code="pro", meter="emails").limit == 2_000


def test_beat_schedule_has_the_monthly_rollover():
    entry = app.conf.beat_schedule["quota-period-rollover"]
    assert entry["task"] == "billing.tasks.quota_period_rollover"
    assert entry["schedule"].day_of_month == {1}
    assert (entry["schedule"].hour, entry["schedule"].minute) == ({0}, {5})
    assert entry["options"]["expires"] > 0


# --- stripe_sync_events -------------------------------------------------------------------------

EVENTS_URL = "https://api.stripe.com/v1/events"


@responses.activate
def test_sync_events_stores_decimal_fields_as_stripe_sent_them(stripe_settings):
    """Real subscription and price events carry ``*_decimal`` strings, which the SDK turns into
    ``Decimal``: the command stored nothing and crashed on the first one. It stores the wire
    JSON and applies the subscription to our mirror."""
    workspace = UserFactory().personal_workspace
    metadata = {"kind": "plan", "workspace_id": str(workspace.pk), "plan_code": "pro"}
    stripe_events.checkout_row(
        workspace=workspace,
        session_id="cs_sync_1",
        kind="plan",
        mode="subscription",
        metadata=metadata,
        amount_minor=2000,
    )
    sub = stripe_events.subscription(workspace=workspace, subscription_id="sub_synced_1", plan_code="pro")
    price = stripe_events.stripe_object("price")
    sub_event = stripe_events.event("customer.subscription.created", sub, event_id="evt_sync_sub")
    price_event = stripe_events.event("price.updated", price, event_id="evt_sync_price")
    page = {"object": "list", "url": "/v1/events", "has_more": False, "data": [sub_event, price_event]}
    responses.get(EVENTS_URL, json=page)

    out = StringIO()
    call_command("stripe_sync_events", since="1d", stdout=out, stderr=StringIO())

    assert "2 fetched, 2 new, 2 processed, 0 already done, 0 failed" in out.getvalue()
    stored = StripeEvent.objects.get(stripe_event_id="evt_sync_sub").payload["data"]["object"]
    assert stored["items"]["data"][0]["price"]["unit_amount_decimal"] == "2000"
    assert stored == json.loads(json.dumps(sub))  # byte-for-byte what Stripe sent
    price_row = StripeEvent.objects.get(stripe_event_id="evt_sync_price")
    assert price_row.payload["data"]["object"]["unit_amount_decimal"] == "2000"
    assert price_row.status == StripeEvent.Status.IGNORED
    row = Subscription.objects.get(stripe_subscription_id="sub_synced_1")
    assert (row.workspace, row.plan.code, row.status) == (workspace, "pro", "active")
