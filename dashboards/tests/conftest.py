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
def other_user(db, catalog):
    return UserFactory()


@pytest.fixture
def staff(db, catalog):
    return StaffFactory()
