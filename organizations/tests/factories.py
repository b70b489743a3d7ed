import uuid

import factory
from django.utils import timezone

from accounts.models import User
from organizations.models import Organization, UsageReport


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    # Unusable password: tests log in with force_login, and hashing would only slow them down.
    password = factory.django.Password(None)


class StaffUserFactory(UserFactory):
    is_staff = True
    is_superuser = True


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
