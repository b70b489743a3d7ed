"""Users and keys for every app's tests: the one ``UserFactory`` (the other apps' factories
modules import it from here), staff and superusers, customer API keys and provider keys."""

import uuid

import factory

from accounts.models import ApiKey, ProviderCredential, User
from accounts.services import api_key_create, provider_credential_set

DEFAULT_PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", DEFAULT_PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class StaffUserFactory(UserFactory):
    is_staff = True


class SuperuserFactory(StaffUserFactory):
    """An operator with every admin permission."""

    is_superuser = True


class ApiKeyFactory(factory.django.DjangoModelFactory):
    """A key row written directly (a made-up hash, no plaintext): for data that only needs keys to
    exist; ``api_key_for`` creates one as production does."""

    class Meta:
        model = ApiKey

    user = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"key {n}")
    prefix = factory.Sequence(lambda n: f"sk_agentai_T{n:03d}")
    key_hash = factory.LazyFunction(lambda: uuid.uuid4().hex + uuid.uuid4().hex)


def api_key_for(user=None, *, name="test key"):
    """A key created the way production creates it: (ApiKey, plaintext)."""
    return api_key_create(user=user or UserFactory(), name=name)


def personal_key_for(user, *, provider="deepseek", secret="sk-personal-1234567890"):
    return provider_credential_set(
        scope=ProviderCredential.Scope.PERSONAL, provider=provider, secret=secret, user=user
    )


def global_key_for(*, provider="deepseek", secret="sk-global-abcdefghij"):
    return provider_credential_set(scope=ProviderCredential.Scope.GLOBAL, provider=provider, secret=secret)
