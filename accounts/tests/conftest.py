import pytest
from rest_framework.test import APIClient

from accounts.providers import PROVIDERS
from proxy.tests.fakeupstream import FakeUpstream

from .factories import StaffUserFactory, UserFactory, api_key_for


@pytest.fixture(scope="session")
def _provider_server():
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(autouse=True)
def provider_fake(settings, _provider_server):
    """Saving a global key asks the provider first: every provider is a local fake here (no
    network in tests), answering "ok" unless a test sets ``mode`` or ``path_modes``."""
    fake = _provider_server
    with fake.lock:
        fake.mode, fake.path_modes, fake.requests, fake.sleep_seconds = "ok", {}, [], 2.0
    settings.PROVIDER_BASE_URLS = {
        code: fake.url_for(f"/{code}") for code in PROVIDERS if code != "instantly"
    }
    settings.INSTANTLY_API_URL = fake.url_for("/instantly")
    return fake


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
