import pytest
from django.core.management import call_command

from billing.models import Plan, PlanQuota

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
    from config.celery import app

    entry = app.conf.beat_schedule["quota-period-rollover"]
    assert entry["task"] == "billing.tasks.quota_period_rollover"
    assert entry["schedule"].day_of_month == {1}
    assert (entry["schedule"].hour, entry["schedule"].minute) == ({0}, {5})
    assert entry["options"]["expires"] > 0
