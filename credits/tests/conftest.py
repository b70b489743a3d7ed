import pytest

from accounts.models import Membership
from credits.services import credit_grant

from .factories import StaffFactory, UserFactory, seed_catalogue


@pytest.fixture
def catalogue(db):
    return seed_catalogue()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def workspace(user):
    """The credits' tenant: ``user``'s personal workspace (``user`` is its owner)."""
    return user.personal_workspace


@pytest.fixture
def other_user(db):
    return UserFactory()


@pytest.fixture
def other_workspace(other_user):
    return other_user.personal_workspace


@pytest.fixture
def admin_user(db):
    return StaffFactory()


@pytest.fixture
def fund(admin_user):
    """fund(workspace, amount) → grant credits through the service."""

    def _fund(workspace, amount):
        return credit_grant(workspace=workspace, amount=amount, admin_user=admin_user)

    return _fund


@pytest.fixture
def member(workspace):
    """member(role) → a new user who is a member of ``workspace`` with that role."""

    def _member(role):
        person = UserFactory()
        Membership.objects.create(workspace=workspace, user=person, role=role)
        return person

    return _member


@pytest.fixture
def user_client(api_client, user):
    api_client.force_authenticate(user)
    return api_client
