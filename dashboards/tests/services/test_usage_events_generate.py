from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db.models import Count, Sum

from dashboards.services import GENERATED_MARKER, usage_events_generate
from dashboards.tests.factories import UserFactory
from proxy.models import DailySpend, UsageDailyRollup, UsageEvent


def _assert_rollups_match_events():
    events = {
        (row["user_id"], row["provider"], row["created_at__date"]): row
        for row in UsageEvent.objects.values("user_id", "provider", "created_at__date").annotate(
            n=Count("id"), tokens=Sum("total_tokens"), cost=Sum("cost_usd")
        )
    }
    rollups = {(r.user_id, r.provider, r.day): r for r in UsageDailyRollup.objects.all()}
    assert set(events) == set(rollups)
    for key, row in events.items():
        assert (rollups[key].requests, rollups[key].tokens, rollups[key].cost_usd) == (
            row["n"],
            row["tokens"],
            row["cost"],
        )
    spend = sum((s.spent_usd for s in DailySpend.objects.all()), Decimal(0))
    assert spend == UsageEvent.objects.aggregate(c=Sum("cost_usd"))["c"]


@pytest.mark.django_db
def test_generated_events_and_rollups_agree():
    heavy = UserFactory()
    result = usage_events_generate(count=3000, users=5, days=10, heavy_user=heavy, heavy_share=0.2, seed=7)
    assert result.events == 3000 and result.users == 6
    assert UsageEvent.objects.filter(request_id=GENERATED_MARKER).count() == 3000
    heavy_count = UsageEvent.objects.filter(user=heavy).count()
    assert 450 < heavy_count < 750  # ~20 %
    statuses = set(UsageEvent.objects.values_list("status_code", flat=True))
    assert statuses == {200, 429, 502}
    _assert_rollups_match_events()


@pytest.mark.django_db
def test_generation_adds_to_existing_rollups():
    heavy = UserFactory()
    usage_events_generate(count=200, users=2, days=3, heavy_user=heavy, heavy_share=1.0, seed=1)
    before = UsageDailyRollup.objects.filter(user=heavy).aggregate(r=Sum("requests"))["r"]
    usage_events_generate(count=100, users=2, days=3, heavy_user=heavy, heavy_share=1.0, seed=2)
    assert UsageDailyRollup.objects.filter(user=heavy).aggregate(r=Sum("requests"))["r"] == before + 100
    _assert_rollups_match_events()


@pytest.mark.django_db
def test_command_validates_and_reports(capsys):
    call_command("generate_usage_events", "--count", "50", "--users", "2", "--seed", "3")
    assert "50 usage events" in capsys.readouterr().out
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("generate_usage_events", "--count", "5", "--heavy-user", "nobody@example.com")
    with pytest.raises(CommandError):
        call_command("generate_usage_events", "--users", "0")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_copy_path_on_postgresql():
    """The COPY path writes the same rows (and keeps existing rollups) on PostgreSQL."""
    heavy = UserFactory()
    result = usage_events_generate(count=20_000, users=10, days=30, heavy_user=heavy, seed=11)
    assert UsageEvent.objects.count() == 20_000 == result.events
    _assert_rollups_match_events()
