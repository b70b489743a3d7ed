"""Users and keys for every app's tests: the one ``UserFactory`` (the other apps' factories
modules import it from here), staff and superusers, customer API keys and provider keys."""

import uuid

import factory
from django.utils import timezone

from accounts.models import ApiKey, Membership, ProviderCredential, Role, User, Workspace
from accounts.services import api_key_create, provider_credential_set

DEFAULT_PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    name = factory.Faker("name")
    # A customer who confirmed their address; UserFactory(email_verified_at=None) for one who did not.
    email_verified_at = factory.LazyFunction(timezone.now)
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
    exist; ``api_key_for`` creates one as production does. ``user=`` (or ``created_by=``) is the
    member who made it; the key belongs to their personal workspace unless ``workspace=`` says."""

    class Meta:
        model = ApiKey

    class Params:
        user = None

    created_by = factory.LazyAttribute(lambda key: key.user or UserFactory())
    workspace = factory.LazyAttribute(lambda key: key.created_by.personal_workspace)
    name = factory.Sequence(lambda n: f"key {n}")
    prefix = factory.Sequence(lambda n: f"sk_agentai_T{n:03d}")
    key_hash = factory.LazyFunction(lambda: uuid.uuid4().hex + uuid.uuid4().hex)


def api_key_for(user=None, *, workspace=None, name="test key"):
    """A key created the way production creates it, by ``user`` in ``workspace`` (their personal
    one by default): (ApiKey, plaintext)."""
    user = user or UserFactory()
    return api_key_create(workspace=workspace or user.personal_workspace, created_by=user, name=name)


def workspace_key_for(workspace, *, provider="deepseek", secret="sk-workspace-1234567890", actor=None):
    """The workspace's own (bring-your-own) provider key."""
    return provider_credential_set(
        scope=ProviderCredential.Scope.WORKSPACE,
        provider=provider,
        secret=secret,
        workspace=workspace,
        actor=actor,
    )


def personal_key_for(user, *, provider="deepseek", secret="sk-personal-1234567890"):
    """The provider key of ``user``'s personal workspace."""
    return workspace_key_for(user.personal_workspace, provider=provider, secret=secret, actor=user)


def global_key_for(*, provider="deepseek", secret="sk-global-abcdefghij"):
    return provider_credential_set(scope=ProviderCredential.Scope.GLOBAL, provider=provider, secret=secret)


def member_add(workspace, *, role, user=None):
    """``user`` (a new one by default) made a member of ``workspace`` with ``role``, written
    directly (test data; members really join through an invitation). Returns the user."""
    user = user or UserFactory()
    Membership.objects.create(workspace=workspace, user=user, role=role)
    return user


def team_workspace(*, owner=None, name="Team"):
    """A shared (non-personal) workspace with ``owner`` (a new user by default) as its owner."""
    owner = owner or UserFactory()
    workspace = Workspace.objects.create(name=name, slug=f"team-{uuid.uuid4().hex[:10]}")
    Membership.objects.create(workspace=workspace, user=owner, role=Role.OWNER)
    return workspace
