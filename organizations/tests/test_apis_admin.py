import json

import pytest

from organizations.models import Organization

from .conftest import STRIPE, stripe_error, stripe_json
from .factories import LinkedOrganizationFactory, OrganizationFactory, UserFactory

LIST_URL = "/api/admin/organizations"
pytestmark = pytest.mark.django_db


def link_url(organization_id):
    return f"/api/admin/organizations/{organization_id}/link"


LINK_BODY = {
    "admin_email": "billing@acme.com",
    "deployment_type": "on-premise",
    "plan_type": "managed-cloud",
    "trial_days": 4,
}


def post_link(client, organization_id, body=None):
    return client.post(
        link_url(organization_id), data=json.dumps(body or LINK_BODY), content_type="application/json"
    )


def test_list_splits_pending_and_linked_in_original_shape(staff_client, django_assert_max_num_queries):
    pending = OrganizationFactory(name="Acme Corp", instance_url="acme.vaultai.eu")
    OrganizationFactory(name="Beta SARL")
    linked = LinkedOrganizationFactory(name="Production Inc")
    for _ in range(5):
        LinkedOrganizationFactory()

    with django_assert_max_num_queries(3):  # session, user, organizations
        response = staff_client.get(LIST_URL)

    assert response.status_code == 200
    body = response.json()
    assert body["summary"] == {"total": 8, "linked": 6, "pending": 2}
    by_id = {item["id"]: item for item in body["organizations"]["pending"]}
    item = by_id[str(pending.pk)]
    assert item["name"] == "Acme Corp"
    assert item["instance_url"] == "acme.vaultai.eu"
    assert item["subscription_status"] == "pending"
    assert item["created_at"].endswith("Z")
    linked_item = next(i for i in body["organizations"]["linked"] if i["id"] == str(linked.pk))
    assert {
        "stripe_customer_id": linked.stripe_customer_id,
        "stripe_subscription_id": linked.stripe_subscription_id,
        "deployment_type": "on-premise",
        "plan_type": "self-hosted",
        "subscription_status": "active",
        "admin_email": "billing@example.com",
    }.items() <= linked_item.items()


@pytest.mark.parametrize("url", [LIST_URL, "link"])
def test_non_staff_get_403(client, url):
    organization = OrganizationFactory()
    client.force_login(UserFactory())
    target = link_url(organization.pk) if url == "link" else LIST_URL
    response = client.get(target) if url != "link" else post_link(client, organization.pk)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_anonymous_is_refused(client):
    response = client.get(LIST_URL)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_link_happy_path_answers_the_original_shape(staff_client, stripe_http):
    organization = OrganizationFactory(name="Acme Corp")
    stripe_http.post(f"{STRIPE}/v1/customers", **stripe_json(200, {"id": "cus_NEW123", "object": "customer"}))
    stripe_http.post(
        f"{STRIPE}/v1/subscriptions",
        **stripe_json(
            200,
            {"id": "sub_NEW789", "object": "subscription", "status": "trialing", "trial_end": 1_893_456_000},
        ),
    )

    response = post_link(staff_client, organization.pk)

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "message": "Organization linked to Stripe successfully",
        "organization": {
            "id": str(organization.pk),
            "name": "Acme Corp",
            "stripe_customer_id": "cus_NEW123",
            "stripe_subscription_id": "sub_NEW789",
            "subscription_status": "trial",
            "trial_end": "2030-01-01T00:00:00.000Z",
        },
    }


def test_link_stripe_failure_is_502_with_message_and_kept_customer(staff_client, stripe_http):
    organization = OrganizationFactory()
    stripe_http.post(f"{STRIPE}/v1/customers", **stripe_json(200, {"id": "cus_NEW123", "object": "customer"}))
    stripe_http.post(f"{STRIPE}/v1/subscriptions", **stripe_error(400, "No such price: 'price_managed'"))

    response = post_link(staff_client, organization.pk)

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert "No such price" in error["message"]
    assert error["stripe_customer_id"] == "cus_NEW123"
    assert "sk_test" not in response.content.decode()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"admin_email": "not-an-email"}, "admin_email"),
        ({"deployment_type": "cloud"}, "deployment_type"),
        ({"plan_type": "free"}, "plan_type"),
        ({"trial_days": 731}, "trial_days"),
        ({"trial_days": -1}, "trial_days"),
        ({"trial_days": "4"}, "trial_days"),
    ],
)
def test_link_validation_is_400(staff_client, stripe_http, overrides, field):
    response = post_link(staff_client, OrganizationFactory().pk, {**LINK_BODY, **overrides})
    assert response.status_code == 400
    assert field in response.json()["error"]["errors"]
    assert len(stripe_http.calls) == 0


@pytest.mark.parametrize("organization_id", ["0b8c6a55-0000-4000-8000-000000000000", "not-a-uuid"])
def test_link_unknown_organization_is_404(staff_client, organization_id):
    response = post_link(staff_client, organization_id)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_link_already_linked_is_409(staff_client, stripe_http):
    response = post_link(staff_client, LinkedOrganizationFactory().pk)
    assert response.status_code == 409
    assert len(stripe_http.calls) == 0
    assert Organization.objects.get().status == Organization.Status.ACTIVE
