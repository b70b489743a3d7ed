import pytest
from rest_framework.test import APIClient

from .factories import StaffUserFactory, UserFactory, api_key_for


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


@pytest.fixture
def staff_user(db):
    return StaffUserFactory()


@pytest.fixture
def user_client(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def staff_client(staff_user):
    client = APIClient()
    client.force_authenticate(staff_user)
    return client


@pytest.fixture
def bearer_client(user):
    """Authenticated with a real customer API key, through the real authentication class."""
    _, plaintext = api_key_for(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    client.plaintext = plaintext
    return client
