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


@pytest.fixture(autouse=True)
def _celery_eager(monkeypatch):
    """Run queued tasks inline. Settings are read before the root conftest marks the run as a
    test, so with REDIS_URL set the app would otherwise publish to the real broker."""
    from config.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    monkeypatch.setitem(app.conf, "task_eager_propagates", True)
