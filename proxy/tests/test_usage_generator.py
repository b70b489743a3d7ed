"""The synthetic usage generator writes events, rollups and spend that agree with each other and
with the mix it promises (the dashboards bench and demos read them)."""

from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count, Sum

from accounts.models import ApiKey
from proxy.catalog import DEFAULT_PRICES
from proxy.models import DailySpend, UsageDailyRollup, UsageEvent
from proxy.usage_generator import GENERATED_MARKER, usage_events_generate

from .factories import UserFactory

pytestmark = pytest.mark.django_db


def _assert_rollups_match_events():
    events = {
        (row["workspace_id"], row["provider"], row["created_at__date"]): row
        for row in UsageEvent.objects.values("workspace_id", "provider", "created_at__date").annotate(
            n=Count("id"), tokens=Sum("total_tokens"), cost=Sum("cost_usd")
        )
    }
    rollups = {(r.workspace_id, r.provider, r.day): r for r in UsageDailyRollup.objects.all()}
    assert set(events) == set(rollups)
    for key, row in events.items():
        assert (rollups[key].requests, rollups[key].tokens, rollups[key].cost_usd) == (
            row["n"],
            row["tokens"],
            row["cost"],
        )
    spend = sum((s.spent_usd for s in DailySpend.objects.all()), Decimal(0))
    assert spend == UsageEvent.objects.aggregate(c=Sum("cost_usd"))["c"]


def test_generated_events_and_rollups_agree():
    heavy = UserFactory().personal_workspace
    result = usage_events_generate(
        count=3000, users=5, days=10, heavy_workspace=heavy, heavy_share=0.2, seed=7
    )
    assert result.events == 3000 and result.workspaces == 6
    assert result.rollups == UsageDailyRollup.objects.count()
    assert UsageEvent.objects.filter(request_id=GENERATED_MARKER).count() == 3000
    assert UsageEvent.objects.filter(workspace=heavy).count() == 600  # exactly 20 %
    statuses = set(UsageEvent.objects.values_list("status_code", flat=True))
    assert statuses == {200, 429, 502}
    assert (
        UsageEvent.objects.filter(status_code__gte=400, total_tokens__gt=0).count() == 0
    )  # failures cost nothing
    assert 9 <= DailySpend.objects.count() <= 11  # spread over ~10 UTC days
    _assert_rollups_match_events()


def test_events_follow_the_mix_and_the_catalogue_prices():
    usage_events_generate(count=4000, users=3, days=5, seed=5)
    shares = dict(UsageEvent.objects.values_list("provider").annotate(n=Count("id")))
    assert 1500 < shares["deepseek"] < 2100  # 45 %
    assert 80 < shares["anthropic"] < 320  # 5 %
    prices = {(p, m): (Decimal(i), Decimal(o)) for p, m, i, o in DEFAULT_PRICES}
    for event in UsageEvent.objects.filter(status_code=200)[:200]:
        inp, out = prices[(event.provider, event.upstream_model)]
        expected = (event.prompt_tokens * inp + event.completion_tokens * out) / 1_000_000
        assert event.cost_usd == expected.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def test_every_event_points_at_its_workspaces_unusable_key():
    heavy = UserFactory().personal_workspace
    usage_events_generate(count=300, users=3, days=2, heavy_workspace=heavy, seed=3)
    keys = dict(ApiKey.objects.filter(name="generated").values_list("workspace_id", "id"))
    assert len(keys) == 4
    assert not UsageEvent.objects.exclude(api_key_id__in=keys.values()).exists()
    for workspace_id, key_id in UsageEvent.objects.values_list("workspace_id", "api_key_id").distinct():
        assert keys[workspace_id] == key_id
    # Each generated workspace is a new user's personal one, and that user made its key.
    owners = dict(
        ApiKey.objects.filter(name="generated").values_list("workspace_id", "created_by__personal_workspace")
    )
    assert all(workspace_id == owned for workspace_id, owned in owners.items())


def test_generation_adds_to_existing_rollups():
    heavy = UserFactory().personal_workspace
    usage_events_generate(count=200, users=2, days=3, heavy_workspace=heavy, heavy_share=1.0, seed=1)
    before = UsageDailyRollup.objects.filter(workspace=heavy).aggregate(r=Sum("requests"))["r"]
    usage_events_generate(count=100, users=2, days=3, heavy_workspace=heavy, heavy_share=1.0, seed=2)
    assert UsageDailyRollup.objects.filter(workspace=heavy).aggregate(r=Sum("requests"))["r"] == before + 100
    _assert_rollups_match_events()


def test_command_validates_and_reports(capsys):
    call_command("generate_usage_events", "--count", "50", "--users", "2", "--seed", "3")
    assert "50 usage events" in capsys.readouterr().out
    with pytest.raises(CommandError):
        call_command("generate_usage_events", "--count", "5", "--heavy-user", "nobody@example.com")
    with pytest.raises(CommandError):
        call_command("generate_usage_events", "--users", "0")


def test_command_gives_the_heavy_users_personal_workspace_its_share(capsys):
    heavy = UserFactory(email="heavy@example.com")
    call_command(
        "generate_usage_events", "--count", "40", "--users", "2", "--heavy-user", "Heavy@example.com",
        "--heavy-share", "0.5", "--seed", "4",
    )  # fmt: skip
    assert UsageEvent.objects.filter(workspace=heavy.personal_workspace).count() == 20
    assert f"heavy workspace id {heavy.personal_workspace.pk}" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_a_larger_batch_commits_consistent_rows():
    """Outside a test transaction (as the bench runs it): the rows commit and still agree."""
    heavy = UserFactory().personal_workspace
    result = usage_events_generate(count=20_000, users=10, days=30, heavy_workspace=heavy, seed=11)
    assert UsageEvent.objects.count() == 20_000 == result.events
    assert UsageEvent.objects.filter(workspace=heavy).count() == 1000
    _assert_rollups_match_events()
