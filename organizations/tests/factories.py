import uuid

import factory
from django.utils import timezone

from accounts.tests.factories import SuperuserFactory as StaffUserFactory
from accounts.tests.factories import UserFactory
from organizations.models import Organization, UsageReport

__all__ = (
    "LinkedOrganizationFactory",
    "OrganizationFactory",
    "StaffUserFactory",
    "UsageReportFactory",
    "UserFactory",
)


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    id = factory.LazyFunction(uuid.uuid4)
    name = factory.Sequence(lambda n: f"Org {n}")
    instance_url = factory.Sequence(lambda n: f"org{n}.vaultai.eu")
    first_seen_at = factory.LazyFunction(timezone.now)
    latest_user_count = 10


class LinkedOrganizationFactory(OrganizationFactory):
    status = Organization.Status.ACTIVE
    admin_email = "billing@example.com"
    deployment_type = Organization.DeploymentType.ON_PREMISE
    plan_type = Organization.PlanType.SELF_HOSTED
    stripe_customer_id = factory.Sequence(lambda n: f"cus_test{n}")
    stripe_subscription_id = factory.Sequence(lambda n: f"sub_test{n}")
    linked_at = factory.LazyFunction(timezone.now)


class UsageReportFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UsageReport

    organization = factory.SubFactory(OrganizationFactory)
    reported_at = factory.LazyFunction(timezone.now)
    report_on = factory.LazyAttribute(lambda o: o.reported_at.date())
    user_count = 42
