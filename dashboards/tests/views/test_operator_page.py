from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import InvalidKeyDay
from dashboards.tests.factories import (
    DailySpendFactory,
    OrganizationFactory,
    RollupFactory,
    UserFactory,
    team_workspace_create,
)
from proxy.models import RateLimitedDay

pytestmark = pytest.mark.django_db


def test_staff_only_through_admin_login(client, user):
    response = client.get("/admin/dashboard/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(user)
    response = client.get("/admin/dashboard/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_operator_page_renders_blocks_and_link_buttons(
    midday, client, staff, settings, django_assert_max_num_queries
):
    settings.DAILY_BUDGET_USD = Decimal("10")
    today = timezone.now().date()
    DailySpendFactory(day=today, spent_usd=Decimal("9.3"))
    RollupFactory(provider="openai", day=today, requests=4, cost_usd=Decimal("9.3"))
    pending = OrganizationFactory(name="Beta SARL")
    OrganizationFactory(
        name="Production Inc", stripe_subscription_id="sub_p", stripe_customer_id="cus_p", status="active"
    )
    client.force_login(staff)
    with django_assert_max_num_queries(32):  # 2 of them: provider health; 5: business, drill-down
        response = client.get("/admin/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-alert="budget"' in html and "CRITICAL" in html
    assert 'id="kpi-budget" data-level="critical"' in html
    assert f"/admin/organizations/organization/{pending.pk}/link/" in html
    assert "Production Inc" in html and 'data-provider="openai"' in html


def test_admin_index_links_the_dashboard(client, staff):
    client.force_login(staff)
    html = client.get("/admin/").content.decode()
    assert 'href="/admin/dashboard/"' in html


@pytest.mark.parametrize(
    ("model", "threshold", "cells"),
    [
        (
            RateLimitedDay,
            "ABUSE_RATE_LIMITED_MINUTES_PER_DAY",
            '<td class="n">7</td><td class="n">0</td><td>rate_limited</td>',
        ),
        (
            InvalidKeyDay,
            "ABUSE_INVALID_KEY_MINUTES_PER_DAY",
            '<td class="n">0</td><td class="n">7</td><td>invalid_keys</td>',
        ),
    ],
)
def test_a_workspace_refused_before_any_call_is_recorded_is_flagged_on_the_page(
    midday, client, staff, settings, model, threshold, cells
):
    """Kept past the rate limit, or still trying a revoked key: minutes the rollups never see."""
    setattr(settings, threshold, 5)
    refused = team_workspace_create(owner=UserFactory(email="founder@example.com"), name="Refused team")
    model.objects.create(workspace=refused, day=timezone.now().date(), minutes=7)
    client.force_login(staff)

    html = client.get("/admin/dashboard/").content.decode()

    flagged = html[html.index('id="abusive-users"') :]
    flagged = flagged[: flagged.index("</table>")]
    assert "Flagged workspaces today (1)" in flagged
    assert f'href="/admin/accounts/workspace/{refused.pk}/change/">Refused team</a>' in flagged
    assert "founder@example.com" in flagged
    assert cells in flagged
