"""Issue 22 #15: a deployment on a fresh database, on a Redis that served another database, must
not answer with that database's cached state (it answered new users with others' plans)."""

import pytest

from billing.models import Subscription
from billing.services import plan_catalog_seed
from billing.tests.factories import SubscriptionFactory
from core import cache_identity
from core.models import DeploymentIdentity

pytestmark = [pytest.mark.redis, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _seeded():
    plan_catalog_seed()
    cache_identity.identity_forget()
    yield
    cache_identity.identity_forget()


def test_a_fresh_database_does_not_read_the_previous_ones_cached_plans(api_client):
    sub = SubscriptionFactory()  # deployment A: workspace n pays for business
    api_client.force_authenticate(sub.workspace.personal_owner)
    assert api_client.get("/api/billing/subscription").json()["plan"]["code"] == "business"

    # The same row id in another database is another person, on the free plan: remove A's rows
    # behind the services' back (no invalidation, as another database would not send one).
    Subscription.objects.filter(pk=sub.pk).delete()
    assert api_client.get("/api/billing/subscription").json()["plan"]["code"] == "business"  # the bug

    # A fresh database has its own identity (created by its migration).
    DeploymentIdentity.objects.all().delete()
    cache_identity.identity_forget()  # a process started on it
    assert api_client.get("/api/billing/subscription").json()["plan"]["code"] == "free"
