from decimal import Decimal

import pytest
from django.utils import timezone

from dashboards.tests.factories import DailySpendFactory, OrganizationFactory, RollupFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_staff_only_through_admin_login(client, user):
    response = client.get("/admin/dashboard/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(user)
    response = client.get("/admin/dashboard/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_operator_page_renders_blocks_and_link_buttons(
    client, staff, settings, django_assert_max_num_queries
):
    settings.DAILY_BUDGET_USD = Decimal("10")
    today = timezone.now().date()
    DailySpendFactory(day=today, spent_usd=Decimal("9.3"))
    RollupFactory(user=UserFactory(), provider="openai", day=today, requests=4, cost_usd=Decimal("9.3"))
    pending = OrganizationFactory(name="Beta SARL")
    OrganizationFactory(
        name="Production Inc", stripe_subscription_id="sub_p", stripe_customer_id="cus_p", status="active"
    )
    client.force_login(staff)
    with django_assert_max_num_queries(25):
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
