import hmac

import pytest

from organizations import selectors
from organizations.selectors import billing_token_is_valid, organization_get

from .factories import OrganizationFactory


def test_token_is_compared_against_every_configured_token(settings, monkeypatch):
    """No early exit: the time taken does not reveal which token matched."""
    settings.BILLING_API_TOKEN = ["first-token", "second-token", "third-token"]
    calls = []
    compare = hmac.compare_digest

    def spy(a, b):
        calls.append(b)
        return compare(a, b)

    monkeypatch.setattr(selectors.hmac, "compare_digest", spy)

    assert billing_token_is_valid(presented="first-token") is True
    assert len(calls) == 3
    assert billing_token_is_valid(presented="nope") is False
    assert billing_token_is_valid(presented="") is False


@pytest.mark.django_db
def test_organization_get_tolerates_bad_ids():
    organization = OrganizationFactory()
    assert organization_get(organization_id=str(organization.pk)) == organization
    assert organization_get(organization_id="abc-123") is None
