"""The operator's review tools in the admin: ingestion tokens, queued name/URL changes, held
reports and the jump factor."""

import hashlib
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from organizations.ingestion_tokens import PREFIX
from organizations.models import Organization, UsageReport
from organizations.services import organization_ingestion_token_issue

from .factories import LinkedOrganizationFactory, OrganizationFactory, UsageReportFactory

pytestmark = pytest.mark.django_db
CHANGELIST = "admin:organizations_organization_changelist"


def act(staff_client, action, organizations, **extra):
    return staff_client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [str(o.pk) for o in organizations], **extra},
        follow=True,
    )


def test_issue_token_confirms_then_shows_it_once(staff_client, secret_registry):
    organization = LinkedOrganizationFactory(name="Acme Corp")

    confirm = act(staff_client, "issue_ingestion_token", [organization])
    assert confirm.status_code == 200
    assert "Issue the token" in confirm.content.decode()
    organization.refresh_from_db()
    assert not organization.has_ingestion_token  # nothing issued before confirming

    shown = act(staff_client, "issue_ingestion_token", [organization], confirm="yes")
    page = shown.content.decode()
    token = re.search(rf"{PREFIX}[A-Za-z0-9_-]{{43}}", page).group(0)
    secret_registry.add(token)
    assert "no-store" in shown["Cache-Control"]
    organization.refresh_from_db()
    assert organization.ingestion_token_hash == hashlib.sha256(token.encode()).hexdigest()

    # Never again: not on the change page, the list, nor a second confirmation page.
    for url in (
        reverse("admin:organizations_organization_change", args=[organization.pk]),
        reverse(CHANGELIST),
    ):
        body = staff_client.get(url).content.decode()
        assert token not in body
    again = act(staff_client, "issue_ingestion_token", [organization]).content.decode()
    assert token not in again and "replaces the current token" in again


def test_issue_token_needs_exactly_one_organization(staff_client):
    organizations = [OrganizationFactory(), OrganizationFactory()]
    response = act(staff_client, "issue_ingestion_token", organizations, confirm="yes")
    assert "Select exactly one organization" in response.content.decode()
    assert not Organization.objects.filter(ingestion_token_hash__isnull=False).exists()


def test_revoke_token_action(staff_client, secret_registry):
    organization = OrganizationFactory()
    secret_registry.add(organization_ingestion_token_issue(organization=organization))
    response = act(staff_client, "revoke_ingestion_token", [organization])
    assert "1 token(s) revoked" in response.content.decode()
    organization.refresh_from_db()
    assert not organization.has_ingestion_token


@pytest.mark.parametrize(
    ("action", "expected_name"), [("accept_pending_identity", "New"), ("discard_pending_identity", "Old")]
)
def test_pending_identity_actions(staff_client, action, expected_name):
    organization = LinkedOrganizationFactory(
        name="Old", pending_name="New", pending_instance_url="new.example", pending_identity_at=timezone.now()
    )
    act(staff_client, action, [organization])
    organization.refresh_from_db()
    assert organization.name == expected_name
    assert not organization.has_pending_identity


def test_jump_factor_is_editable_on_the_change_page(staff_client):
    organization = LinkedOrganizationFactory(name="Acme")
    url = reverse("admin:organizations_organization_change", args=[organization.pk])
    page = staff_client.get(url)
    assert 'name="user_count_jump_factor"' in page.content.decode()
    assert 'name="name"' not in page.content.decode()  # the rest stays read-only

    response = staff_client.post(url, {"user_count_jump_factor": "3", "name": "Renamed"})

    assert response.status_code == 302
    organization.refresh_from_db()
    assert (organization.user_count_jump_factor, organization.name) == (3, "Acme")


def test_reject_held_action(staff_client):
    organization = LinkedOrganizationFactory()
    held = UsageReportFactory(organization=organization, billing_status=UsageReport.BillingStatus.HELD)
    response = staff_client.post(
        reverse("admin:organizations_usagereport_changelist"),
        {"action": "reject_held", "_selected_action": [str(held.pk)]},
        follow=True,
    )
    assert "1 held report(s) rejected" in response.content.decode()
    held.refresh_from_db()
    assert held.billing_status == UsageReport.BillingStatus.REJECTED


def test_release_of_a_held_report_whose_day_is_taken_is_explained(staff_client):
    organization = LinkedOrganizationFactory()
    at = timezone.now() - timedelta(hours=1)
    UsageReportFactory(
        organization=organization, reported_at=at, billing_status=UsageReport.BillingStatus.SENT
    )
    held = UsageReportFactory(
        organization=organization, reported_at=at, billing_status=UsageReport.BillingStatus.HELD
    )

    response = staff_client.post(
        reverse("admin:organizations_usagereport_changelist"),
        {"action": "release_held", "_selected_action": [str(held.pk)]},
        follow=True,
    )

    assert "Another report was already accepted" in response.content.decode()
    held.refresh_from_db()
    assert held.billing_status == UsageReport.BillingStatus.HELD


def test_staff_list_shows_pending_identity_and_token_presence_never_the_hash(staff_client, secret_registry):
    queued = LinkedOrganizationFactory(
        name="Old", pending_name="New", pending_instance_url="new.example", pending_identity_at=timezone.now()
    )
    secret_registry.add(organization_ingestion_token_issue(organization=queued))
    plain = LinkedOrganizationFactory()

    response = staff_client.get("/api/admin/organizations")

    linked = {item["id"]: item for item in response.json()["organizations"]["linked"]}
    assert linked[str(queued.pk)]["pending_identity"]["name"] == "New"
    assert linked[str(queued.pk)]["pending_identity"]["instance_url"] == "new.example"
    assert linked[str(queued.pk)]["pending_identity"]["queued_at"].endswith("Z")
    assert linked[str(queued.pk)]["has_ingestion_token"] is True
    assert (linked[str(plain.pk)]["pending_identity"], linked[str(plain.pk)]["has_ingestion_token"]) == (
        None,
        False,
    )
    queued.refresh_from_db()
    assert queued.ingestion_token_hash not in response.content.decode()
