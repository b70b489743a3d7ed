from datetime import UTC, datetime, timedelta

import pytest
import responses
from django.conf import settings
from django.utils import timezone

from billing.gateways.stripe import StripeServiceError
from core.exceptions import ApiError
from organizations.models import Organization, UsageReport
from organizations.services import organization_link

from ..conftest import STRIPE, form, stripe_error, stripe_json
from ..factories import LinkedOrganizationFactory, OrganizationFactory, UsageReportFactory

pytestmark = pytest.mark.django_db
TRIAL_END = 1_893_456_000  # 2030-01-01T00:00:00Z


def customer(id_="cus_NEW123"):
    return stripe_json(200, {"id": id_, "object": "customer", "email": "billing@acme.com"})


def subscription(status="trialing", trial_end=TRIAL_END, id_="sub_NEW789"):
    return stripe_json(
        200,
        {
            "id": id_,
            "object": "subscription",
            "status": status,
            "customer": "cus_NEW123",
            "trial_end": trial_end,
        },
    )


def link(organization, **overrides):
    kwargs = {
        "organization": organization,
        "admin_email": "billing@acme.com",
        "deployment_type": "on-premise",
        "plan_type": "managed-cloud",
        "trial_days": 4,
    }
    kwargs.update(overrides)
    return organization_link(**kwargs)


def test_link_creates_customer_then_trial_subscription_with_idempotency_keys(stripe_http):
    organization = OrganizationFactory(name="Acme Corp")
    stripe_http.post(f"{STRIPE}/v1/customers", **customer())
    stripe_http.post(f"{STRIPE}/v1/subscriptions", **subscription())

    linked = link(organization)

    customer_call, subscription_call = stripe_http.calls
    assert customer_call.request.headers["Idempotency-Key"] == f"org-customer:{organization.pk}"
    assert form(customer_call)["email"] == "billing@acme.com"
    assert form(customer_call)["name"] == "Acme Corp"
    assert form(customer_call)["metadata[organization_id]"] == str(organization.pk)
    assert subscription_call.request.headers["Idempotency-Key"] == f"org-subscription:{organization.pk}"
    sent = form(subscription_call)
    assert sent["customer"] == "cus_NEW123"
    assert sent["items[0][price]"] == "price_managed"
    assert sent["trial_period_days"] == "4"
    assert sent["metadata[organization_id]"] == str(organization.pk)

    linked.refresh_from_db()
    assert linked.stripe_customer_id == "cus_NEW123"
    assert linked.stripe_subscription_id == "sub_NEW789"
    assert linked.status == Organization.Status.TRIAL
    assert linked.trial_end == datetime(2030, 1, 1, tzinfo=UTC)
    assert (linked.admin_email, linked.deployment_type, linked.plan_type) == (
        "billing@acme.com",
        "on-premise",
        "managed-cloud",
    )
    assert linked.link_error == ""


def test_link_without_trial_is_active_and_sends_no_trial(stripe_http):
    organization = OrganizationFactory()
    stripe_http.post(f"{STRIPE}/v1/customers", **customer())
    stripe_http.post(f"{STRIPE}/v1/subscriptions", **subscription(status="active", trial_end=None))

    linked = link(organization, trial_days=0, plan_type="self-hosted", price_id="price_chosen")

    sent = form(stripe_http.calls[1])
    assert "trial_period_days" not in sent
    assert sent["items[0][price]"] == "price_chosen"
    assert linked.status == Organization.Status.ACTIVE
    assert linked.trial_end is None


def test_subscription_failure_keeps_customer_and_retry_reuses_it(stripe_http):
    organization = OrganizationFactory()
    customers = stripe_http.post(f"{STRIPE}/v1/customers", **customer())
    failing = stripe_http.post(f"{STRIPE}/v1/subscriptions", **stripe_error(500, "Stripe is down"))

    with pytest.raises(StripeServiceError) as excinfo:
        link(organization)

    organization.refresh_from_db()
    assert "Stripe is down" in excinfo.value.message
    assert organization.stripe_customer_id == "cus_NEW123"
    assert organization.stripe_subscription_id is None
    assert organization.status == Organization.Status.PENDING
    assert "Stripe is down" in organization.link_error

    stripe_http.remove(failing)
    stripe_http.post(f"{STRIPE}/v1/subscriptions", **subscription())
    linked = link(organization)

    assert customers.call_count == 1  # never a second customer
    assert linked.stripe_subscription_id == "sub_NEW789"
    assert linked.link_error == ""
    # A transient failure keeps the idempotency key: Stripe may have created it after all.
    subscription_keys = [
        call.request.headers["Idempotency-Key"]
        for call in stripe_http.calls
        if "subscriptions" in call.request.url
    ]
    assert subscription_keys == [f"org-subscription:{organization.pk}"] * 2


def test_refused_subscription_gets_a_fresh_key_for_corrected_parameters(stripe_http):
    organization = OrganizationFactory()
    stripe_http.post(f"{STRIPE}/v1/customers", **customer())
    refused = stripe_http.post(
        f"{STRIPE}/v1/subscriptions", **stripe_error(400, "No such price: 'price_typo'")
    )

    with pytest.raises(StripeServiceError):
        link(organization, price_id="price_typo")
    stripe_http.remove(refused)
    stripe_http.post(f"{STRIPE}/v1/subscriptions", **subscription())
    link(organization, price_id="price_fixed")

    keys = [call.request.headers["Idempotency-Key"] for call in stripe_http.calls]
    assert keys == [
        f"org-customer:{organization.pk}",
        f"org-subscription:{organization.pk}",
        f"org-subscription:{organization.pk}:1",
    ]


def test_customer_failure_is_recorded_and_nothing_is_stored(stripe_http):
    organization = OrganizationFactory()
    stripe_http.post(f"{STRIPE}/v1/customers", **stripe_error(400, "Invalid email address"))

    with pytest.raises(StripeServiceError):
        link(organization)

    organization.refresh_from_db()
    assert organization.stripe_customer_id is None
    assert "Invalid email address" in organization.link_error
    assert len(stripe_http.calls) == 1


def test_already_linked_is_a_conflict(stripe_http):
    with pytest.raises(ApiError) as excinfo:
        link(LinkedOrganizationFactory())
    assert excinfo.value.status_code == 409
    assert len(stripe_http.calls) == 0


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"trial_days": 731}, "trial_days"),
        ({"trial_days": -1}, "trial_days"),
        ({"deployment_type": "cloud"}, "deployment_type"),
        ({"plan_type": "enterprise"}, "plan_type"),
    ],
)
def test_bad_input_is_refused_before_stripe(stripe_http, overrides, param):
    with pytest.raises(ApiError) as excinfo:
        link(OrganizationFactory(), **overrides)
    assert excinfo.value.param == param
    assert len(stripe_http.calls) == 0


def test_missing_price_for_plan_type_is_refused(stripe_http):
    stripe_http_settings = stripe_http  # noqa: F841 - settings come with the fixture

    settings.STRIPE_PRICE_VAULTAI_SELF_HOSTED = ""
    with pytest.raises(ApiError) as excinfo:
        link(OrganizationFactory(), plan_type="self-hosted")
    assert excinfo.value.param == "price_id"
    assert len(stripe_http.calls) == 0


def test_backfill_queues_only_unbilled_reports_within_35_days(
    stripe_http, django_capture_on_commit_callbacks
):
    now = timezone.now()
    organization = OrganizationFactory()
    recent = UsageReportFactory(organization=organization, reported_at=now - timedelta(days=3))
    edge = UsageReportFactory(organization=organization, reported_at=now - timedelta(days=34, hours=23))
    too_old = UsageReportFactory(organization=organization, reported_at=now - timedelta(days=36))
    other = UsageReportFactory(reported_at=now - timedelta(days=1))
    stripe_http.post(f"{STRIPE}/v1/customers", **customer())
    stripe_http.post(f"{STRIPE}/v1/subscriptions", **subscription())
    meter = stripe_http.post(
        f"{STRIPE}/v1/billing/meter_events", **stripe_json(200, {"object": "billing.meter_event"})
    )

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        link(organization, backfill=True, now=now)

    assert len(callbacks) == 2
    assert meter.call_count == 2
    statuses = dict(UsageReport.objects.values_list("pk", "billing_status"))
    assert statuses[recent.pk] == statuses[edge.pk] == UsageReport.BillingStatus.SENT
    assert statuses[too_old.pk] == UsageReport.BillingStatus.UNBILLED
    assert statuses[other.pk] == UsageReport.BillingStatus.UNBILLED


def test_link_without_backfill_leaves_reports_unbilled(stripe_http, django_capture_on_commit_callbacks):
    organization = OrganizationFactory()
    report = UsageReportFactory(organization=organization)
    stripe_http.post(f"{STRIPE}/v1/customers", **customer())
    stripe_http.post(f"{STRIPE}/v1/subscriptions", **subscription())

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        link(organization, backfill=False)

    assert callbacks == []
    report.refresh_from_db()
    assert report.billing_status == UsageReport.BillingStatus.UNBILLED


def test_stripe_not_configured_is_an_operator_error(settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_PRICE_VAULTAI_MANAGED_CLOUD = "price_managed"
    organization = OrganizationFactory()
    with responses.RequestsMock() as mock, pytest.raises(StripeServiceError):
        link(organization)
    assert len(mock.calls) == 0
    organization.refresh_from_db()
    assert "not configured" in organization.link_error
