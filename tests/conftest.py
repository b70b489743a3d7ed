"""Fixtures for the system tests that span apps: two ordinary users and their personal
workspaces, a staff user, clients authenticated every way the API accepts (session, Bearer
customer key), the seeded catalogue and a local fake upstream for the proxy routes."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.tests.factories import StaffUserFactory, UserFactory, api_key_for
from billing.services import plan_catalog_seed
from credits.models import CreditPack
from credits.tests.factories import seed_catalogue
from proxy.catalog import proxy_catalog_seed
from proxy.selectors import catalog_invalidate
from proxy.tests.fakeupstream import FakeUpstream

PROVIDERS = ("openai", "anthropic", "google", "mistral", "groq", "openrouter", "deepseek")


@pytest.fixture
def catalog(db):
    """Plans, credit packs/costs and the proxy's model catalogue, as the data migrations seed them
    (recreated because transactional tests flush them)."""
    plan_catalog_seed()
    if not CreditPack.objects.exists():
        seed_catalogue()
    proxy_catalog_seed()
    catalog_invalidate()


@pytest.fixture(scope="session")
def _fake_upstream_server():
    """One fake provider server for the session (stopping one costs half a second)."""
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def fake_upstream(settings, _fake_upstream_server):
    """Every provider's base URL (and Instantly's) points at the local fake; no sandbox.
    The fake starts each test answering "ok" with no recorded requests."""
    fake = _fake_upstream_server
    with fake.lock:
        fake.__dict__.pop("mode_for", None)  # a test may have replaced the method on the instance
        fake.mode, fake.path_modes, fake.requests = "ok", {}, []
        fake.delay_seconds, fake.sleep_seconds, fake.client_went_away = 0.0, 2.0, False
        fake.stream_chunks, fake.chunk_delay = 5, 0.0
        fake.prompt_tokens, fake.completion_tokens = 10, 15
    settings.SANDBOX_PROVIDER_ENABLED = False
    settings.PROXY_UPSTREAM_TIMEOUT = 5.0
    settings.PROVIDER_BASE_URLS = {code: fake.url_for(f"/{code}") for code in PROVIDERS}
    settings.INSTANTLY_API_URL = fake.url_for("/instantly")
    catalog_invalidate()
    yield fake
    catalog_invalidate()


@pytest.fixture
def user_a(db):
    return UserFactory(email="alice@example.com")


@pytest.fixture
def user_b(db):
    return UserFactory(email="bob@example.com")


@pytest.fixture
def workspace_a(user_a):
    """A's personal workspace: the tenant of everything A does unless a test names a team."""
    return user_a.personal_workspace


@pytest.fixture
def workspace_b(user_b):
    return user_b.personal_workspace


@pytest.fixture
def staff(db):
    return StaffUserFactory(email="operator@example.com", is_superuser=True)


def bearer_client(user, workspace=None) -> APIClient:
    """A client sending a real customer key (made by ``user`` in ``workspace``, their personal
    one by default) through the real authentication class."""
    _key, plaintext = api_key_for(user, workspace=workspace)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    client.plaintext = plaintext
    return client


def session_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def client_a(user_a):
    return bearer_client(user_a)


@pytest.fixture
def client_b(user_b):
    return bearer_client(user_b)


@pytest.fixture
def session_a(user_a):
    return session_client(user_a)


@pytest.fixture
def session_b(user_b):
    return session_client(user_b)


@pytest.fixture
def staff_session(staff):
    return session_client(staff)
