import pytest

from billing.services import plan_catalog_seed

from .factories import StaffFactory, UserFactory


@pytest.fixture
def catalog(db):
    """The default plans (data-migration rows do not survive transactional tests)."""
    plan_catalog_seed()


@pytest.fixture
def user(db, catalog):
    return UserFactory()


@pytest.fixture
def workspace(user):
    """The tenant the dashboards show: ``user``'s personal workspace."""
    return user.personal_workspace


@pytest.fixture
def other_user(db, catalog):
    return UserFactory()


@pytest.fixture
def other_workspace(other_user):
    return other_user.personal_workspace


@pytest.fixture
def staff(db, catalog):
    return StaffFactory()
