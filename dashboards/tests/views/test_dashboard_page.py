from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Role
from accounts.tenancy import SESSION_WORKSPACE_KEY
from billing.models import Plan
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


def test_overview_shows_plan_quotas_charts_and_the_last_calls(
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
    assert 'id="get-started"' not in html  # the workspace has a key
    assert f"{key.prefix}…" in html  # each call names its key
    # Keys, provider keys and the billing portal have their own pages.
    assert 'id="api-keys"' not in html and 'id="provider-keys"' not in html and "Manage billing" not in html
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
    assert "Renews on" in html and 'href="/billing/"' in html


def test_overview_lists_the_last_ten_calls_and_links_to_activity(client, user, workspace):
    key = ApiKeyFactory(workspace=workspace, created_by=user)
    for _ in range(12):
        UsageEventFactory(workspace=workspace, api_key=key, status_code=200)
    client.force_login(user)

    html = client.get("/dashboard/").content.decode()

    assert html.count('data-status="200"') == 10
    assert 'id="see-all-activity"' in html


def test_a_new_workspace_is_shown_how_to_start(client, user):
    client.force_login(user)

    html = client.get("/dashboard/").content.decode()

    assert 'id="get-started"' in html and 'href="/keys/"' in html


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
    UsageEventFactory(workspace=team, api_key=team_key)
    UsageEventFactory(workspace=user.personal_workspace, api_key=personal_key)
    client.force_login(user)

    html = client.get("/dashboard/").content.decode()
    assert personal_key.prefix in html and team_key.prefix not in html

    _switch(client, team)
    html = client.get("/dashboard/").content.decode()
    assert f'data-workspace="{team.pk}" data-role="admin"' in html and "Orbit" in html
    assert team_key.prefix in html and personal_key.prefix not in html


def test_a_developer_sees_usage_and_their_keys_calls_but_not_money_or_others_calls(client, user, other_user):
    team = team_workspace_create(owner=other_user, members={user: Role.DEVELOPER})
    theirs = ApiKeyFactory(workspace=team, created_by=other_user, name="owners-key")
    mine = ApiKeyFactory(workspace=team, created_by=user, name="devs-key")
    LedgerEntry.objects.create(
        workspace=team, kind="consume", amount=-7, balance_after=0, idempotency_key="t:dev", endpoint="/x"
    )
    UsageEventFactory(workspace=team, api_key=theirs)
    UsageEventFactory(workspace=team, api_key=mine)
    client.force_login(user)
    _switch(client, team)

    response = client.get("/dashboard/")

    html = response.content.decode()
    assert response.status_code == 200
    assert mine.prefix in html  # their own key's calls
    assert theirs.prefix not in html  # another member's calls: keys.manage_any, as Activity
    assert UPGRADE not in html and 'data-tab="billing"' not in html  # billing.read
    assert 'id="chart-credits"' not in html  # spend is billing.read


def test_a_billing_member_sees_money_but_not_provider_keys(client, user, other_user):
    team = team_workspace_create(owner=other_user, members={user: Role.BILLING})
    LedgerEntry.objects.create(
        workspace=team, kind="consume", amount=-7, balance_after=0, idempotency_key="t:bill", endpoint="/x"
    )
    client.force_login(user)
    _switch(client, team)

    html = client.get("/dashboard/").content.decode()

    assert 'id="chart-credits"' in html and UPGRADE in html and 'data-tab="billing"' in html


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
