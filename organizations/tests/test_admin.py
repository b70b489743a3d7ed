from datetime import timedelta

import pytest
from django.urls import reverse

from organizations.models import Organization, UsageReport

from .conftest import STRIPE, stripe_error, stripe_json
from .factories import LinkedOrganizationFactory, OrganizationFactory, UsageReportFactory

pytestmark = pytest.mark.django_db


def test_changelist_filters_pending_and_linked(staff_client):
    OrganizationFactory(name="Acme Corp")
    LinkedOrganizationFactory(name="Production Inc")
    url = reverse("admin:organizations_organization_changelist")

    pending = staff_client.get(url, {"linked": "pending"}).content.decode()
    linked = staff_client.get(url, {"linked": "linked"}).content.decode()

    assert "Acme Corp" in pending and "Production Inc" not in pending
    assert "Link to Stripe" in pending
    assert "Production Inc" in linked and "Acme Corp" not in linked


def test_link_page_links_and_redirects(staff_client, stripe_http):
    organization = OrganizationFactory(name="Acme Corp")
    stripe_http.post(f"{STRIPE}/v1/customers", **stripe_json(200, {"id": "cus_NEW123", "object": "customer"}))
    stripe_http.post(
        f"{STRIPE}/v1/subscriptions",
        **stripe_json(200, {"id": "sub_NEW789", "status": "trialing", "trial_end": None}),
    )
    url = reverse("admin:organizations_organization_link", args=[organization.pk])

    assert staff_client.get(url).status_code == 200
    response = staff_client.post(
        url,
        {
            "admin_email": "billing@acme.com",
            "deployment_type": "on-premise",
            "plan_type": "self-hosted",
            "trial_days": "14",
            "price_id": "",
        },
    )

    assert response.status_code == 302
    organization.refresh_from_db()
    assert organization.stripe_subscription_id == "sub_NEW789"
    assert stripe_http.calls[1].request.body.count("price_selfhosted") == 1


def test_link_page_shows_stripe_errors_instead_of_500(staff_client, stripe_http):
    organization = OrganizationFactory()
    stripe_http.post(f"{STRIPE}/v1/customers", **stripe_error(400, "Invalid email address: nope"))
    url = reverse("admin:organizations_organization_link", args=[organization.pk])

    response = staff_client.post(
        url,
        {
            "admin_email": "a@b.co",
            "deployment_type": "on-premise",
            "plan_type": "self-hosted",
            "trial_days": "0",
        },
    )

    assert response.status_code == 200
    assert "Invalid email address" in response.content.decode()


def test_link_page_refuses_bad_trial_days(staff_client, stripe_http):
    url = reverse("admin:organizations_organization_link", args=[OrganizationFactory().pk])
    response = staff_client.post(
        url,
        {
            "admin_email": "a@b.co",
            "deployment_type": "on-premise",
            "plan_type": "self-hosted",
            "trial_days": "731",
        },
    )
    assert response.status_code == 200
    assert response.context["form"].errors["trial_days"]
    assert len(stripe_http.calls) == 0


def test_link_page_needs_staff(client):
    url = reverse("admin:organizations_organization_link", args=[OrganizationFactory().pk])
    assert client.get(url).status_code == 302  # to the admin login


def test_retry_action_requeues_failed_reports_only(
    staff_client, stripe_http, django_capture_on_commit_callbacks
):
    organization = LinkedOrganizationFactory()
    failed = UsageReportFactory(organization=organization, billing_status=UsageReport.BillingStatus.FAILED)
    sent = UsageReportFactory(
        organization=organization,
        billing_status=UsageReport.BillingStatus.SENT,
        reported_at=failed.reported_at - timedelta(days=2),
    )
    meter = stripe_http.post(f"{STRIPE}/v1/billing/meter_events", **stripe_json(200, {"object": "x"}))

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:organizations_usagereport_changelist"),
            {"action": "retry_sending", "_selected_action": [str(failed.pk), str(sent.pk)]},
            follow=True,
        )

    assert response.status_code == 200
    failed.refresh_from_db()
    sent.refresh_from_db()
    assert failed.billing_status == UsageReport.BillingStatus.SENT
    assert sent.billing_status == UsageReport.BillingStatus.SENT
    assert meter.call_count == 1
    messages = [str(m) for m in response.context["messages"]]
    assert any("1 report(s) queued" in m for m in messages)


def test_usage_report_changelist_filters_by_status(staff_client, django_assert_max_num_queries):
    organization = LinkedOrganizationFactory()
    UsageReportFactory(organization=organization, billing_status=UsageReport.BillingStatus.FAILED)
    url = reverse("admin:organizations_usagereport_changelist")
    with django_assert_max_num_queries(12):
        response = staff_client.get(url, {"billing_status__exact": "failed"})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1


def test_organizations_cannot_be_added_or_deleted_in_admin(staff_client):
    organization = OrganizationFactory()
    assert staff_client.get(reverse("admin:organizations_organization_add")).status_code == 403
    assert (
        staff_client.get(
            reverse("admin:organizations_organization_delete", args=[organization.pk])
        ).status_code
        == 403
    )
    assert Organization.objects.count() == 1


def test_change_page_links_to_reports_and_link_page(staff_client):
    organization = OrganizationFactory()
    UsageReportFactory(organization=organization)
    response = staff_client.get(reverse("admin:organizations_organization_change", args=[organization.pk]))
    content = response.content.decode()
    assert response.status_code == 200
    assert f"organization__id__exact={organization.pk}" in content
    assert reverse("admin:organizations_organization_link", args=[organization.pk]) in content
