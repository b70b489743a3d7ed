import factory

from accounts.tests.factories import SuperuserFactory as StaffFactory
from accounts.tests.factories import UserFactory
from credits.models import CreditPack, EndpointCost

__all__ = ("CreditPackFactory", "EndpointCostFactory", "StaffFactory", "UserFactory", "seed_catalogue")


class CreditPackFactory(factory.django.DjangoModelFactory):
    """The seeded catalogue (get-or-create: transactional tests flush the data migration)."""

    class Meta:
        model = CreditPack
        django_get_or_create = ("code",)

    code = "pack_100"
    name = "Pack 100"
    credits = 100
    price_minor = 1900
    currency = "eur"
    display_order = 10


class EndpointCostFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EndpointCost
        django_get_or_create = ("endpoint",)

    endpoint = "/api/ai/generate"
    per_call = 5
    per_1000_units = 0
    unit = EndpointCost.Unit.NONE


def seed_catalogue():
    """The packs and costs of the data migration, recreated for transactional tests."""
    packs = [
        CreditPackFactory(code="pack_100", name="Pack 100", credits=100, price_minor=1900, display_order=10),
        CreditPackFactory(
            code="pack_500",
            name="Pack 500",
            credits=500,
            price_minor=7900,
            display_order=20,
        ),
        CreditPackFactory(
            code="pack_1000", name="Pack 1000", credits=1000, price_minor=13900, display_order=30
        ),
    ]
    EndpointCostFactory(endpoint="/api/ai/generate", per_call=5)
    EndpointCostFactory(endpoint="/api/ai/generate/hd", per_call=10)
    EndpointCostFactory(endpoint="/api/3d/render-highres", per_call=8)
    EndpointCostFactory(endpoint="/api/ar/convert-2d-to-3d", per_call=15)
    EndpointCostFactory(
        endpoint="/api/proxy/deepseek/chat", per_call=0, per_1000_units=2, unit=EndpointCost.Unit.TOKENS
    )
    return packs
