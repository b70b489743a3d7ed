"""The dashboards bench's generator writes events, rollups and spend that agree with each other."""

import pytest
from django.db.models import Count, Sum

from bench.generate_events import events_generate


@pytest.mark.postgres
@pytest.mark.django_db
def test_generated_events_match_their_rollups_and_spend():
    from accounts.models import User
    from proxy.models import DailySpend, UsageDailyRollup, UsageEvent

    heavy = User.objects.create_user(email="heavy@example.com", password="x-long-password-1")
    result = events_generate(events=2000, users=5, days=10, heavy_user=heavy, heavy_share=0.25)

    events = UsageEvent.objects.all()
    assert result.events == events.count() == 2000
    assert result.users == 6
    assert events.filter(user=heavy).count() == 500
    assert events.filter(status_code__gte=400, total_tokens__gt=0).count() == 0  # failures cost nothing
    totals = events.aggregate(tokens=Sum("total_tokens"), cost=Sum("cost_usd"), n=Count("id"))
    rollups = UsageDailyRollup.objects.aggregate(
        requests=Sum("requests"), tokens=Sum("tokens"), cost=Sum("cost_usd")
    )
    assert rollups == {"requests": totals["n"], "tokens": totals["tokens"], "cost": totals["cost"]}
    assert DailySpend.objects.aggregate(s=Sum("spent_usd"))["s"] == totals["cost"]
    assert 9 <= DailySpend.objects.count() <= 11  # spread over ~10 UTC days
