import factory

from accounts.models import ProviderCredential, User
from accounts.services import api_key_create, provider_credential_set

DEFAULT_PASSWORD = "correct-horse-battery-staple-42"


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


def api_key_for(user=None, *, name="test key"):
    """A key created the way production creates it: (ApiKey, plaintext)."""
    return api_key_create(user=user or UserFactory(), name=name)


def personal_key_for(user, *, provider="deepseek", secret="sk-personal-1234567890"):
    return provider_credential_set(
        scope=ProviderCredential.Scope.PERSONAL, provider=provider, secret=secret, user=user
    )


def global_key_for(*, provider="deepseek", secret="sk-global-abcdefghij"):
    return provider_credential_set(scope=ProviderCredential.Scope.GLOBAL, provider=provider, secret=secret)
