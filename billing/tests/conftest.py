import pytest

from billing.services import plan_catalog_seed

from .chargily_events import SECRET
from .stripe_events import WEBHOOK_SECRET


@pytest.fixture(autouse=True)
def catalog(db):
    """The default plans (the data migration's rows do not survive transactional tests)."""
    plan_catalog_seed()


@pytest.fixture
def webhook_settings(settings):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    return settings


@pytest.fixture
def stripe_settings(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_billing_tests"
    settings.STRIPE_API_BASE = ""
    settings.SIMULATED_CHECKOUT_ENABLED = False
    return settings


@pytest.fixture
def simulated_settings(settings):
    settings.DEBUG = True
    settings.STRIPE_SECRET_KEY = ""
    settings.SIMULATED_CHECKOUT_ENABLED = True
    settings.SITE_URL = "http://testserver"
    settings.CHECKOUT_REDIRECT_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    return settings


@pytest.fixture
def chargily_settings(settings):
    """Simulated Chargily (DEBUG, no API key), signed with the tests' secret."""
    settings.DEBUG = True
    settings.CHARGILY_API_KEY = ""
    settings.CHARGILY_SECRET_KEY = SECRET
    settings.SITE_URL = "http://testserver"
    settings.CHECKOUT_REDIRECT_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    return settings


@pytest.fixture
def chargily_live_settings(chargily_settings):
    """Real Chargily (test mode): every HTTP call must be stubbed with ``responses``."""
    chargily_settings.CHARGILY_API_KEY = "test_pk_chargily_tests"
    chargily_settings.CHARGILY_MODE = "test"
    chargily_settings.CHARGILY_API_BASE = ""
    return chargily_settings
