import pytest

from proxy.catalog import proxy_catalog_seed
from proxy.router import router_reseed
from proxy.selectors import catalog_invalidate

from .factories import key_for, plan_configure
from .fakeupstream import FakeUpstream
from .live import uvicorn_served

PROVIDERS = ("openai", "anthropic", "google", "mistral", "groq", "openrouter", "deepseek")


@pytest.fixture(autouse=True)
def proxy_settings(settings):
    """Deterministic routing, no sandbox unless a test asks, fresh in-process catalogue."""
    settings.SANDBOX_PROVIDER_ENABLED = False
    settings.PROXY_ROUTER_SEED = 1234
    settings.DAILY_BUDGET_USD = 50
    settings.BYOK_COUNTS_AGAINST_QUOTA = False
    settings.PROXY_UPSTREAM_TIMEOUT = 5.0
    router_reseed(1234)
    catalog_invalidate()
    yield settings
    catalog_invalidate()


@pytest.fixture
def fake_upstream(settings):
    """A local OpenAI-compatible server; every provider's base URL points at it (per-provider path)."""
    with FakeUpstream() as fake:
        settings.PROVIDER_BASE_URLS = {code: fake.url_for(f"/{code}") for code in PROVIDERS}
        settings.INSTANTLY_API_URL = fake.url_for("/instantly")
        yield fake


@pytest.fixture
def catalog(db):
    proxy_catalog_seed()


@pytest.fixture
def free_plan(db):
    return plan_configure()


@pytest.fixture
def caller(db, free_plan, catalog, api_client):
    """(user, plaintext key, client sending the key)."""
    user, plaintext = key_for()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return user, plaintext, api_client


@pytest.fixture
def live_asgi(transactional_db):
    """Tollgate served by uvicorn (ASGI, as in production) in a thread; yields its base URL."""
    with uvicorn_served() as (url, _thread):
        yield url


@pytest.fixture
def same_thread_db(monkeypatch):
    """Run the views' database blocks on the test thread so query counts see every query."""
    monkeypatch.setattr("proxy.dbcall.THREAD_SENSITIVE", True)


@pytest.fixture
def live_asgi_fast(transactional_db, settings):
    """``live_asgi`` that also checks the server's thread ended; yields the base URL.

    The call path opens one async pool per event loop: uvicorn serves in a thread on its own
    loop, and that loop closes its pool and Redis client (``fast_lane_close``) before it ends,
    so no connection outlives the test.
    """
    with uvicorn_served() as (url, thread):
        yield url
    assert not thread.is_alive(), "uvicorn did not stop"
