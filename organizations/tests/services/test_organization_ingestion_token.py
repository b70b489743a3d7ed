"""Per-organization ingestion tokens: issued by the operator, stored as a hash only, and the only
credential an organization with one accepts."""

import hashlib
import uuid

import pytest
from django.utils import timezone

from core.exceptions import ApiError
from organizations.ingestion_tokens import PREFIX
from organizations.models import Organization, UsageReport
from organizations.selectors import SHARED_CREDENTIAL, ingestion_credential_resolve
from organizations.services import (
    organization_ingestion_token_issue,
    organization_ingestion_token_revoke,
    usage_report_ingest,
)

from ..conftest import TOKEN
from ..factories import LinkedOrganizationFactory, OrganizationFactory

pytestmark = pytest.mark.django_db


def ingest(organization_id, credential):
    return usage_report_ingest(
        organization_id=organization_id,
        organization_name="Acme",
        instance_url="acme.vaultai.eu",
        user_count=5,
        reported_at=timezone.now(),
        credential=credential,
    )


def test_issue_returns_the_token_once_and_stores_only_its_hash(secret_registry):
    organization = LinkedOrganizationFactory()
    token = organization_ingestion_token_issue(organization=organization)
    secret_registry.add(token)

    assert token.startswith(PREFIX) and len(token) == len(PREFIX) + 43
    stored = Organization.objects.filter(pk=organization.pk).values().get()
    assert stored["ingestion_token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert stored["ingestion_token_prefix"] == token[: len(PREFIX) + 4]
    assert stored["ingestion_token_issued_at"] is not None
    assert not any(token in str(value) for value in stored.values())


def test_tokens_are_unique_per_issue(secret_registry):
    first, second = OrganizationFactory(), OrganizationFactory()
    tokens = {organization_ingestion_token_issue(organization=o) for o in (first, second, first)}
    secret_registry.add(list(tokens))
    assert len(tokens) == 3


def test_resolve_shared_own_and_unknown(billing_tokens, secret_registry, django_assert_num_queries):
    organization = OrganizationFactory()
    token = organization_ingestion_token_issue(organization=organization)
    secret_registry.add(token)

    with django_assert_num_queries(0):
        assert ingestion_credential_resolve(presented=TOKEN) == SHARED_CREDENTIAL
        assert ingestion_credential_resolve(presented="nope") is None  # not token-shaped: no query
        assert ingestion_credential_resolve(presented="") is None
    own = ingestion_credential_resolve(presented=token)
    assert own.organization_id == organization.pk and not own.is_shared
    assert ingestion_credential_resolve(presented=PREFIX + "x" * 43) is None


def test_rotation_refuses_the_previous_token(secret_registry):
    organization = OrganizationFactory()
    old = organization_ingestion_token_issue(organization=organization)
    new = organization_ingestion_token_issue(organization=organization)
    secret_registry.add([old, new])

    assert ingestion_credential_resolve(presented=old) is None
    assert ingestion_credential_resolve(presented=new).organization_id == organization.pk


def test_an_organization_with_its_own_token_refuses_the_shared_one(secret_registry):
    organization = LinkedOrganizationFactory()
    secret_registry.add(organization_ingestion_token_issue(organization=organization))

    with pytest.raises(ApiError) as refused:
        ingest(organization.pk, SHARED_CREDENTIAL)
    assert refused.value.code == "forbidden"
    assert not UsageReport.objects.exists()


def test_an_organizations_token_reports_for_it_and_for_no_other(secret_registry):
    organization, other = OrganizationFactory(), OrganizationFactory()
    token = organization_ingestion_token_issue(organization=organization)
    secret_registry.add(token)
    credential = ingestion_credential_resolve(presented=token)

    assert ingest(organization.pk, credential).report.organization_id == organization.pk
    for target in (other.pk, uuid.uuid4()):  # an existing organization, or a new one
        with pytest.raises(ApiError) as refused:
            ingest(target, credential)
        assert refused.value.code == "forbidden"
    assert Organization.objects.count() == 2


def test_a_token_rotated_after_it_was_resolved_is_refused_under_the_lock(secret_registry):
    organization = OrganizationFactory()
    old = organization_ingestion_token_issue(organization=organization)
    credential = ingestion_credential_resolve(presented=old)  # the request authenticated...
    secret_registry.add([old, organization_ingestion_token_issue(organization=organization)])  # ...rotated

    with pytest.raises(ApiError) as refused:
        ingest(organization.pk, credential)
    assert refused.value.code == "forbidden"


def test_revoke_brings_back_the_shared_token(secret_registry):
    organization = OrganizationFactory()
    token = organization_ingestion_token_issue(organization=organization)
    secret_registry.add(token)

    assert organization_ingestion_token_revoke(organization=organization) is True
    assert organization_ingestion_token_revoke(organization=organization) is False
    assert ingestion_credential_resolve(presented=token) is None
    assert ingest(organization.pk, SHARED_CREDENTIAL).duplicate is False
    organization.refresh_from_db()
    assert (organization.ingestion_token_hash, organization.ingestion_token_prefix) == (None, "")
