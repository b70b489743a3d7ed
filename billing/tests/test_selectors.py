import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from billing.models import CheckoutSession, PaymentTransaction, Plan, PlanQuota, StripeEvent, Subscription
from billing.selectors import (
    invoice_revenue_by_plan_get,
    plan_for_user_get,
    plan_list_public,
    plan_quota_get,
    plan_revenue_by_plan_get,
    quota_status_get,
    subscription_get,
)
from billing.services import (
    plan_catalog_invalidate,
    plan_chargily_checkout_start,
    quota_reserve,
    quota_settle,
)

from .factories import SubscriptionFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_user_without_subscription_gets_the_free_plan():
    assert plan_for_user_get(user=UserFactory()).code == "free"


def test_active_subscription_gives_its_plan_and_past_due_keeps_it():
    sub = SubscriptionFactory()
    assert plan_for_user_get(user=sub.user).code == "business"
    cache.clear()
    Subscription.objects.filter(pk=sub.pk).update(status=Subscription.Status.PAST_DUE)
    assert plan_for_user_get(user=sub.user).code == "business"
    cache.clear()
    Subscription.objects.filter(pk=sub.pk).update(status=Subscription.Status.UNPAID)
    assert plan_for_user_get(user=sub.user).code == "free"


def test_cancel_at_period_end_falls_back_to_free_at_period_end():
    end = datetime(2026, 5, 1, tzinfo=UTC)
    sub = SubscriptionFactory(cancel_at_period_end=True, current_period_end=end)
    assert plan_for_user_get(user=sub.user, now=end - timedelta(seconds=1)).code == "business"
    assert plan_for_user_get(user=sub.user, now=end).code == "free"


def test_hot_path_is_one_query_cold_and_none_warm(django_assert_num_queries):
    sub = SubscriptionFactory()
    plan_for_user_get(user=UserFactory())  # loads the in-process catalogue
    with django_assert_num_queries(1):
        assert plan_for_user_get(user=sub.user).code == "business"
    with django_assert_num_queries(0):
        assert plan_for_user_get(user=sub.user).code == "business"


def test_catalogue_reloads_when_a_plan_changes(django_capture_on_commit_callbacks):
    user = UserFactory()
    assert plan_for_user_get(user=user).rate_limit_per_minute == 5
    Plan.objects.filter(code="free").update(rate_limit_per_minute=7)
    assert plan_for_user_get(user=user).rate_limit_per_minute == 5  # cached in process
    with django_capture_on_commit_callbacks(execute=True):
        plan_catalog_invalidate()
    assert plan_for_user_get(user=user).rate_limit_per_minute == 7


def test_quota_status_reports_every_meter():
    user = UserFactory()
    now = datetime(2026, 1, 26, 12, tzinfo=UTC)
    quota_settle(
        reservation=quota_reserve(user=user, meter="llm_tokens", amount=25, now=now), actual=25, now=now
    )
    status = quota_status_get(user=user, now=now)
    assert status["llm_tokens"].as_json() == {
        "used": 25,
        "limit": 100_000,
        "remaining": 99_975,
        "resetDate": "2026-02-01T00:00:00.000Z",
    }
    assert status["emails"].limit == 0
    assert status["requests"].period == "day"
    assert status["requests"].reset_at == datetime(2026, 1, 27, tzinfo=UTC)


def test_quota_status_of_another_user_is_separate():
    user, other = UserFactory(), UserFactory()
    quota_reserve(user=other, meter="llm_tokens", amount=500)
    assert quota_status_get(user=user)["llm_tokens"].reserved == 0


def test_public_plan_list_hides_private_and_inactive_plans():
    Plan.objects.filter(code="scale").update(is_public=False)
    Plan.objects.filter(code="pro").update(is_active=False)
    codes = [plan.code for plan in plan_list_public()]
    assert codes == ["free", "student", "discovery", "business"]


def test_subscription_get_ignores_ended_subscriptions():
    sub = SubscriptionFactory(status=Subscription.Status.CANCELED, ended_at=timezone.now())
    assert subscription_get(user=sub.user) is None


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
        user=UserFactory(),
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
        plan_chargily_checkout_start(user=paid_user, plan_code="student", success_url=back, failure_url=back),
    )
    _chargily_pay(
        client,
        plan_chargily_checkout_start(
            user=failed_user, plan_code="student", success_url=back, failure_url=back
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
