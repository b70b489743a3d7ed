import pytest

from credits.services import credit_grant

from .factories import StaffFactory, UserFactory, seed_catalogue


@pytest.fixture
def catalogue(db):
    return seed_catalogue()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


@pytest.fixture
def admin_user(db):
    return StaffFactory()


@pytest.fixture
def fund(admin_user):
    """fund(user, amount) → grant credits through the service."""

    def _fund(user, amount):
        return credit_grant(user=user, amount=amount, admin_user=admin_user)

    return _fund


@pytest.fixture
def user_client(api_client, user):
    api_client.force_authenticate(user)
    return api_client
