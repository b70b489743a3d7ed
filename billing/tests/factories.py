import factory
from dateutil.relativedelta import relativedelta
from django.utils import timezone

from accounts.tests.factories import UserFactory, member_add, team_workspace
from billing.models import Plan, Subscription

__all__ = ("SubscriptionFactory", "UserFactory", "member_add", "team_workspace")


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    # A new user's personal workspace (every user gets one with the account).
    workspace = factory.LazyFunction(lambda: UserFactory().personal_workspace)
    plan = factory.LazyFunction(lambda: Plan.objects.get(code="business"))
    status = Subscription.Status.ACTIVE
    stripe_customer_id = factory.Sequence(lambda n: f"cus_test{n}")
    stripe_subscription_id = factory.Sequence(lambda n: f"sub_test{n}")
    current_period_end = factory.LazyFunction(lambda: timezone.now() + relativedelta(months=1))
