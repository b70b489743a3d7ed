from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Role
from accounts.services import api_key_create, api_key_limits_set
from accounts.tenancy import SESSION_WORKSPACE_KEY
from billing.models import KeyUsageCounter, Plan
from billing.services.key_limits import key_limit_period
from credits.models import LedgerEntry
from dashboards.tests.factories import (
    ApiKeyFactory,
    RollupFactory,
    SubscriptionFactory,
    UsageEventFactory,
    team_workspace_create,
)

pytestmark = pytest.mark.django_db


def test_dashboard_needs_login(client):
    response = client.get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_dashboard_shows_plan_quotas_keys_charts_and_calls(
    midday, client, user, workspace, django_assert_max_num_queries
):
    today = timezone.now().date()
    key = ApiKeyFactory(workspace=workspace, created_by=user, name="backend")
    RollupFactory(workspace=workspace, provider="groq", day=today, requests=3, tokens=1500)
    RollupFactory(
        workspace=workspace, provider="deepseek", day=today - timedelta(days=2), requests=2, tokens=700
    )
    for _ in range(3):
        UsageEventFactory(workspace=workspace, api_key=key, provider="groq", total_tokens=500)
    UsageEventFactory(
        workspace=workspace, api_key=key, status_code=502, error_code="upstream_error", is_fallback=True
    )
    client.force_login(user)
    with django_assert_max_num_queries(20):
        response = client.get("/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="plan-card" data-plan="free"' in html
    assert 'data-meter="llm_tokens"' in html
    assert "backend" in html and key.prefix in html
    # Charts come from the rollups: today's bar carries today's tokens.
    assert f'data-day="{today.isoformat()}" data-value="1500"' in html
    assert 'data-provider="groq"' in html
    # Last calls: four rows, the failed one flagged.
    assert html.count('data-status="200"') == 3
    assert 'data-status="502"' in html and "fallback" in html


def test_dashboard_paid_plan_and_quota_colours(client, user, workspace):
    pro = Plan.objects.filter(price_minor__gt=0).order_by("price_minor").first()
    SubscriptionFactory(workspace=workspace, plan=pro, current_period_end=timezone.now() + timedelta(days=20))
    client.force_login(user)
    html = client.get("/dashboard/").content.decode()
    assert f'data-plan="{pro.code}"' in html
    assert "Manage billing" in html and "Renews on" in html


def test_dashboard_filters_calls_by_key_and_status(client, user, workspace, other_user, other_workspace):
    mine = ApiKeyFactory(workspace=workspace, created_by=user)
    other = ApiKeyFactory(workspace=workspace, created_by=user)
    foreign = ApiKeyFactory(workspace=other_workspace, created_by=other_user)
    UsageEventFactory(workspace=workspace, api_key=mine, status_code=200)
    UsageEventFactory(workspace=workspace, api_key=mine, status_code=429, error_code="quota_exceeded")
    UsageEventFactory(workspace=workspace, api_key=other, status_code=200)
    client.force_login(user)
    html = client.get(f"/dashboard/?key={mine.pk}&status=error").content.decode()
    assert html.count('data-status="429"') == 1 and 'data-status="200"' not in html
    html = client.get("/dashboard/?status=ok").content.decode()
    assert html.count('data-status="200"') == 2
    # Another workspace's key id is not a filter: ignored with a note, nothing leaks.
    html = client.get(f"/dashboard/?key={foreign.pk}&status=bogus").content.decode()
    assert "Unknown key filter ignored." in html and "Unknown status filter ignored." in html
    assert html.count("data-status=") == 3


def test_dashboard_credit_spend_chart_for_credit_users(midday, client, user, workspace):
    LedgerEntry.objects.create(
        workspace=workspace, kind="purchase", amount=100, balance_after=100, idempotency_key="t:p"
    )
    LedgerEntry.objects.create(
        workspace=workspace, kind="consume", amount=-7, balance_after=93, idempotency_key="t:c", endpoint="/x"
    )
    client.force_login(user)
    html = client.get("/dashboard/").content.decode()
    assert 'id="chart-credits"' in html
    assert f'data-day="{timezone.now().date().isoformat()}" data-value="7"' in html


def test_dashboard_hides_global_keys_from_non_staff(client, user, staff):
    client.force_login(user)
    assert "Global key (operator)" not in client.get("/dashboard/").content.decode()
    client.force_login(staff)
    assert "Global key (operator)" in client.get("/dashboard/").content.decode()


# --- the workspace a page shows, and what a role sees -----------------------------------------


UPGRADE = '<a class="button" href="/pricing/">Upgrade</a>'


def _switch(client, workspace):
    """What the switcher does: the chosen workspace is kept in the session."""
    session = client.session
    session[SESSION_WORKSPACE_KEY] = workspace.pk
    session.save()


def test_dashboard_shows_the_switched_workspace_not_the_personal_one(client, user, other_user):
    team = team_workspace_create(owner=other_user, members={user: Role.ADMIN}, name="Orbit")
    team_key = ApiKeyFactory(workspace=team, created_by=other_user, name="team-backend")
    personal_key = ApiKeyFactory(workspace=user.personal_workspace, created_by=user, name="my-side-project")
    client.force_login(user)

    html = client.get("/dashboard/").content.decode()
    assert personal_key.prefix in html and team_key.prefix not in html

    _switch(client, team)
    html = client.get("/dashboard/").content.decode()
    assert f'data-workspace="{team.pk}" data-role="admin"' in html and "Orbit" in html
    assert team_key.prefix in html and personal_key.prefix not in html


def test_a_developer_sees_usage_and_own_keys_but_not_billing_provider_keys_or_others_keys(
    client, user, other_user
):
    team = team_workspace_create(owner=other_user, members={user: Role.DEVELOPER})
    theirs = ApiKeyFactory(workspace=team, created_by=other_user, name="owners-key")
    mine = ApiKeyFactory(workspace=team, created_by=user, name="devs-key")
    LedgerEntry.objects.create(
        workspace=team, kind="consume", amount=-7, balance_after=0, idempotency_key="t:dev", endpoint="/x"
    )
    client.force_login(user)
    _switch(client, team)

    response = client.get("/dashboard/")

    html = response.content.decode()
    assert response.status_code == 200
    assert mine.prefix in html and f"/dashboard/keys/{mine.pk}/revoke/" in html  # their own key
    assert theirs.prefix not in html  # another member's keys: keys.manage_any, as GET /api/keys
    assert "Manage billing" not in html and UPGRADE not in html  # billing.manage
    assert 'id="provider-keys"' not in html  # provider_keys.read
    assert 'id="chart-credits"' not in html  # spend is billing.read


def test_a_billing_member_sees_money_but_not_provider_keys(client, user, other_user):
    team = team_workspace_create(owner=other_user, members={user: Role.BILLING})
    LedgerEntry.objects.create(
        workspace=team, kind="consume", amount=-7, balance_after=0, idempotency_key="t:bill", endpoint="/x"
    )
    client.force_login(user)
    _switch(client, team)

    html = client.get("/dashboard/").content.decode()

    assert 'id="chart-credits"' in html and UPGRADE in html
    assert 'id="provider-keys"' not in html


def test_a_workspace_the_user_left_falls_back_to_the_personal_one(client, user, other_user):
    team = team_workspace_create(owner=other_user, members={user: Role.ADMIN})
    client.force_login(user)
    _switch(client, team)
    team.memberships.filter(user=user).delete()

    html = client.get("/dashboard/").content.decode()

    assert f'data-workspace="{user.personal_workspace.pk}"' in html


def test_naming_a_foreign_workspace_in_the_header_is_a_404(client, user, other_workspace):
    client.force_login(user)
    for ref in (str(other_workspace.pk), other_workspace.slug, "999999999"):
        assert client.get("/dashboard/", HTTP_X_WORKSPACE=ref).status_code == 404


def test_an_admin_sees_and_may_revoke_every_members_key_with_its_creator(client, user, other_user):
    team = team_workspace_create(owner=other_user, members={user: Role.ADMIN})
    theirs = ApiKeyFactory(workspace=team, created_by=other_user, name="owners-key")
    client.force_login(user)
    _switch(client, team)

    html = client.get("/dashboard/").content.decode()

    assert f"/dashboard/keys/{theirs.pk}/revoke/" in html and f"by {other_user.email}" in html


def test_the_key_list_shows_each_limit_with_its_use(client, user, workspace):
    api_key, _plaintext = api_key_create(workspace=workspace, created_by=user, name="capped")
    api_key_limits_set(
        workspace=workspace, key_id=api_key.pk, limits=[{"unit": "requests", "window": "day", "amount": 100}]
    )
    start, _reset = key_limit_period(window="day", now=timezone.now())
    KeyUsageCounter.objects.create(api_key=api_key, unit="requests", window="day", period_start=start, used=7)
    client.force_login(user)

    page = client.get("/dashboard/").content.decode()

    row = page[page.index(f'data-key-id="{api_key.pk}"') :]
    cell = row[row.index("data-key-limits") : row.index("</td>", row.index("data-key-limits"))]
    assert "7 requests of 100 requests per day" in " ".join(cell.split())
