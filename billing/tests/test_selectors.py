import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from accounts.registry import workspace_delete_blockers
from billing.models import CheckoutSession, PaymentTransaction, Plan, PlanQuota, StripeEvent, Subscription
from billing.selectors import (
    invoice_revenue_by_plan_get,
    plan_for_workspace_get,
    plan_list_public,
    plan_quota_get,
    plan_revenue_by_plan_get,
    quota_status_get,
    subscription_get,
    workspace_delete_refusal_get,
    workspace_for_metadata_get,
)
from billing.services import (
    plan_catalog_invalidate,
    plan_chargily_checkout_start,
    quota_reserve,
    quota_settle,
)

from .factories import SubscriptionFactory, UserFactory, team_workspace

pytestmark = pytest.mark.django_db


def test_user_without_subscription_gets_the_free_plan():
    assert plan_for_workspace_get(workspace=UserFactory().personal_workspace).code == "free"


def test_active_subscription_gives_its_plan_and_past_due_keeps_it():
    sub = SubscriptionFactory()
    assert plan_for_workspace_get(workspace=sub.workspace).code == "business"
    cache.clear()
    Subscription.objects.filter(pk=sub.pk).update(status=Subscription.Status.PAST_DUE)
    assert plan_for_workspace_get(workspace=sub.workspace).code == "business"
    cache.clear()
    Subscription.objects.filter(pk=sub.pk).update(status=Subscription.Status.UNPAID)
    assert plan_for_workspace_get(workspace=sub.workspace).code == "free"


def test_cancel_at_period_end_falls_back_to_free_at_period_end():
    end = datetime(2026, 5, 1, tzinfo=UTC)
    sub = SubscriptionFactory(cancel_at_period_end=True, current_period_end=end)
    assert plan_for_workspace_get(workspace=sub.workspace, now=end - timedelta(seconds=1)).code == "business"
    assert plan_for_workspace_get(workspace=sub.workspace, now=end).code == "free"


def test_hot_path_is_one_query_cold_and_none_warm(django_assert_num_queries):
    sub = SubscriptionFactory()
    plan_for_workspace_get(workspace=UserFactory().personal_workspace)  # loads the in-process catalogue
    with django_assert_num_queries(1):
        assert plan_for_workspace_get(workspace=sub.workspace).code == "business"
    with django_assert_num_queries(0):
        assert plan_for_workspace_get(workspace=sub.workspace).code == "business"


def test_catalogue_reloads_when_a_plan_changes(django_capture_on_commit_callbacks):
    workspace = UserFactory().personal_workspace
    assert plan_for_workspace_get(workspace=workspace).rate_limit_per_minute == 5
    Plan.objects.filter(code="free").update(rate_limit_per_minute=7)
    assert plan_for_workspace_get(workspace=workspace).rate_limit_per_minute == 5  # cached in process
    with django_capture_on_commit_callbacks(execute=True):
        plan_catalog_invalidate()
    assert plan_for_workspace_get(workspace=workspace).rate_limit_per_minute == 7


def test_quota_status_reports_every_meter():
    workspace = UserFactory().personal_workspace
    now = datetime(2026, 1, 26, 12, tzinfo=UTC)
    quota_settle(
        reservation=quota_reserve(workspace=workspace, meter="llm_tokens", amount=25, now=now),
        actual=25,
        now=now,
    )
    status = quota_status_get(workspace=workspace, now=now)
    assert status["llm_tokens"].as_json() == {
        "used": 25,
        "limit": 100_000,
        "remaining": 99_975,
        "resetDate": "2026-02-01T00:00:00.000Z",
    }
    assert status["emails"].limit == 0
    assert status["requests"].period == "day"
    assert status["requests"].reset_at == datetime(2026, 1, 27, tzinfo=UTC)


def test_quota_status_of_another_workspace_is_separate():
    user, other = UserFactory(), UserFactory()
    quota_reserve(workspace=other.personal_workspace, meter="llm_tokens", amount=500)
    assert quota_status_get(workspace=user.personal_workspace)["llm_tokens"].reserved == 0


def test_a_workspace_is_not_deleted_while_a_paid_plan_is_in_force():
    """Billing's guard, registered with accounts in ``BillingConfig.ready``."""
    sub = SubscriptionFactory()
    assert "An active paid subscription" in workspace_delete_blockers(workspace=sub.workspace)
    Subscription.objects.filter(pk=sub.pk).update(status=Subscription.Status.CANCELED)
    reasons = workspace_delete_blockers(workspace=sub.workspace)
    assert "An active paid subscription" not in reasons
    # A past subscription is kept (its foreign key protects the workspace): a refusal, not a 500.
    assert any(reason.startswith("Its billing history") for reason in reasons)
    assert workspace_delete_refusal_get(workspace=team_workspace()) is None


def test_metadata_names_the_workspace_or_a_legacy_users_personal_one():
    user = UserFactory()
    team = team_workspace(owner=user)
    assert (
        workspace_for_metadata_get(metadata={"workspace_id": str(team.pk), "user_id": str(user.pk)}) == team
    )
    assert workspace_for_metadata_get(metadata={"user_id": str(user.pk)}) == user.personal_workspace
    assert workspace_for_metadata_get(metadata={}, fallback_id=str(team.pk)) == team
    assert workspace_for_metadata_get(metadata={"workspace_id": "999999999"}) is None
    assert workspace_for_metadata_get(metadata={"user_id": "x"}) is None


def test_public_plan_list_hides_private_and_inactive_plans():
    Plan.objects.filter(code="scale").update(is_public=False)
    Plan.objects.filter(code="pro").update(is_active=False)
    codes = [plan.code for plan in plan_list_public()]
    assert codes == ["free", "student", "discovery", "business"]


def test_subscription_get_ignores_ended_subscriptions():
    sub = SubscriptionFactory(status=Subscription.Status.CANCELED, ended_at=timezone.now())
    assert subscription_get(workspace=sub.workspace) is None


def test_quota_rules_are_kept_only_on_a_plan_whose_quotas_are_prefetched():
    """The catalogue's plans keep their rules (they are replaced when it reloads); a plan read on
    its own sees a quota edited after it was first asked."""
    plan = Plan.objects.get(code="free")
    assert plan_quota_get(plan=plan, meter="requests").limit == 3
    PlanQuota.objects.filter(plan=plan, meter="requests").update(limit=5)
    assert plan_quota_get(plan=plan, meter="requests").limit == 5

    prefetched = Plan.objects.prefetch_related("quotas").get(code="free")
    assert plan_quota_get(plan=prefetched, meter="requests").limit == 5
    assert plan_quota_get(plan=prefetched, meter="emails").limit == 0
    assert plan_quota_get(plan=prefetched, meter="unknown").limit == 0  # not in the plan


# --- revenue ----------------------------------------------------------------------------------


def _invoice_paid(*, invoice_id: str, subscription: str, amount_paid: int, currency: str = "eur", **kw):
    """An ``invoice.paid`` event stored as the webhook stores it (recent API:
    ``parent.subscription_details``)."""
    payload = {
        "id": f"evt_{invoice_id}",
        "type": "invoice.paid",
        "data": {
            "object": {
                "id": invoice_id,
                "object": "invoice",
                "amount_paid": amount_paid,
                "currency": currency,
                "parent": {"subscription_details": {"subscription": subscription}},
            }
        },
    }
    fields = {"status": StripeEvent.Status.PROCESSED, "received_at": timezone.now(), **kw}
    return StripeEvent.objects.create(
        stripe_event_id=f"evt_{uuid.uuid4().hex}", type="invoice.paid", payload=payload, **fields
    )


def _last_30_days() -> tuple[datetime, datetime]:
    today = timezone.now().date()
    start = datetime.combine(today - timedelta(days=29), datetime.min.time(), tzinfo=UTC)
    return start, datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


@pytest.mark.usefixtures("midday")
def test_invoice_revenue_by_plan():
    plan = Plan.objects.filter(price_minor__gt=0).order_by("price_minor").first()
    sub = SubscriptionFactory(plan=plan)
    _invoice_paid(invoice_id="in_1", subscription=sub.stripe_subscription_id, amount_paid=1900)
    _invoice_paid(invoice_id="in_2", subscription=sub.stripe_subscription_id, amount_paid=1900)
    # The same invoice delivered under a second event id counts once.
    _invoice_paid(invoice_id="in_2", subscription=sub.stripe_subscription_id, amount_paid=1900)
    _invoice_paid(
        invoice_id="in_old",
        subscription=sub.stripe_subscription_id,
        amount_paid=1900,
        received_at=timezone.now() - timedelta(days=45),
    )
    _invoice_paid(
        invoice_id="in_bad", subscription="sub_x", amount_paid=500, status=StripeEvent.Status.FAILED
    )
    CheckoutSession.objects.create(
        workspace=UserFactory().personal_workspace,
        kind="plan",
        mode="subscription",
        line_item={},
        metadata={"plan_code": plan.code},
        amount_minor=1900,
        currency="eur",
        success_url="http://x/s",
        cancel_url="http://x/c",
        is_simulated=True,
        checkout_reference="cs_sim_1",
        status=CheckoutSession.Status.COMPLETE,
    )
    start, end = _last_30_days()
    assert invoice_revenue_by_plan_get(start=start, end=end) == {plan.code: {"eur": 5700}}


def test_invoice_revenue_reads_the_older_subscription_field():
    """Older API versions put the subscription id (or object) at ``invoice.subscription``."""
    sub = SubscriptionFactory()
    event = _invoice_paid(invoice_id="in_legacy", subscription="", amount_paid=4900)
    event.payload["data"]["object"]["subscription"] = {"id": sub.stripe_subscription_id}
    event.save(update_fields=["payload"])
    start, end = _last_30_days()
    assert invoice_revenue_by_plan_get(start=start, end=end) == {"business": {"eur": 4900}}


@pytest.fixture
def chargily_simulated(settings):
    """Chargily's offline page (DEBUG, no API key): payments go through the real webhook."""
    settings.DEBUG = True
    settings.CHARGILY_API_KEY = ""
    settings.CHARGILY_SECRET_KEY = "chargily_selector_tests_secret"
    settings.SITE_URL = "http://testserver"
    settings.CHECKOUT_REDIRECT_HOSTS = ["testserver"]
    return settings


def _chargily_pay(client, session: dict, action: str = "paid") -> None:
    page = f"/payment/chargily/simulated-checkout/{session['session_id']}/"
    response = client.post(page, {"action": action})
    assert action != "paid" or response.status_code == 302


@pytest.mark.usefixtures("midday", "chargily_simulated")
def test_plan_revenue_adds_chargily_periods_once_and_ignores_unpaid_and_old_ones(client):

    back = "http://testserver/dashboard/"
    sub = SubscriptionFactory(plan=Plan.objects.get(code="pro"))
    _invoice_paid(invoice_id="in_pro", subscription=sub.stripe_subscription_id, amount_paid=4900)
    paid_user, failed_user = UserFactory(), UserFactory()
    _chargily_pay(
        client,
        plan_chargily_checkout_start(
            workspace=paid_user.personal_workspace, plan_code="student", success_url=back, failure_url=back
        ),
    )
    _chargily_pay(
        client,
        plan_chargily_checkout_start(
            workspace=failed_user.personal_workspace, plan_code="student", success_url=back, failure_url=back
        ),
        action="failed",
    )
    start, end = _last_30_days()
    assert plan_revenue_by_plan_get(start=start, end=end) == {
        "pro": {"eur": 4900},
        "student": {"dzd": 159_000},
    }
    PaymentTransaction.objects.update(completed_at=timezone.now() - timedelta(days=40))
    assert plan_revenue_by_plan_get(start=start, end=end) == {"pro": {"eur": 4900}}
