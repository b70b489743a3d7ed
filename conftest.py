"""Project-wide test setup.

PostgreSQL and Valkey are always there (`make test` starts the embedded ones, or DATABASE_URL /
REDIS_URL name others), so nothing is skipped for want of them; the ``postgres`` and ``redis``
markers only say what a test exercises. Tests marked ``browser`` need Debian's chromium and
``wrk`` Debian's wrk (the bench's load generator): without them they are skipped with a reason,
unless ``TOLLGATE_REQUIRE_SERVICES=1`` (CI sets it), in which case they fail, so CI can never pass
with them silently skipped.
"""

import logging
import os
import shutil

import pytest
import time_machine
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

import tests.secret_registry  # its REGISTRY is looked up at each use: a test may replace it


def _missing_tool(item) -> str | None:
    if item.get_closest_marker("browser") and not shutil.which(
        os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    ):
        return "needs Debian chromium (apt-get install chromium)"
    if item.get_closest_marker("wrk") and not shutil.which("wrk"):
        return "needs Debian wrk (apt-get install wrk)"
    if item.get_closest_marker("gettext") and not shutil.which("xgettext"):
        return "needs Debian gettext (apt-get install gettext)"
    return None


def pytest_runtest_setup(item):
    reason = _missing_tool(item)
    if reason is None:
        return
    if os.environ.get("TOLLGATE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"TOLLGATE_REQUIRE_SERVICES=1 but this test {reason}", pytrace=False)
    pytest.skip(reason)


CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium under Playwright, one per test module (tests marked ``browser``; each
    test opens its own context). Django's async-safety check is off while it lives: the tests
    make ORM calls on the thread that runs Playwright's event loop."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 (only browser modules need it)

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
                headless=True,
                args=list(CHROMIUM_ARGS),
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Workspace ids start far from user ids: every user gets a personal workspace, so both
    sequences would otherwise count 1, 2, 3 together and a user id passed where a workspace id
    belongs would go unnoticed."""
    from django.db import connection  # noqa: PLC0415 (after pytest-django configured the database)

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("ALTER SEQUENCE accounts_workspace_id_seq RESTART WITH 100001")


@pytest.fixture(autouse=True)
def _clear_cache():
    """Every test starts with an empty cache (rate limits, counters, cached keys) and no
    in-process charge rates (a test's endpoint costs are not the next test's)."""
    from proxy.call.charge import charge_rates_invalidate  # noqa: PLC0415 (apps load first)

    cache.clear()
    charge_rates_invalidate()
    yield


@pytest.fixture
def midday():
    """Start the clock at 12:00:00 UTC of today and let it tick; yields that instant.

    For a test that reads "today", "this month" or "this minute" more than once (in the test,
    then again in the code under test): started just before midnight, a month's end or a
    minute's end, it would see two different ones. Put it first among the test's fixtures
    (or in ``usefixtures``) so the rows the other fixtures create are on the same clock."""
    noon = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    with time_machine.travel(noon, tick=True):
        yield noon


@pytest.fixture
def api_client():
    return APIClient()


# --- Suite-wide secret leak capture (see tests/secret_registry.py) ---------------------------


def pytest_sessionstart(session):
    if not settings.TESTING:  # e.g. DJANGO_SETTINGS_MODULE exported in the shell wins over pyproject
        pytest.exit(
            f"the suite runs on config.settings_test, not {settings.SETTINGS_MODULE}: "
            "unset DJANGO_SETTINGS_MODULE",
            returncode=4,
        )

    logging.getLogger().addHandler(tests.secret_registry.LeakCaptureHandler(level=logging.DEBUG))
    tests.secret_registry.factories_instrument()
    tests.secret_registry.settings_secrets_register()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    tests.secret_registry.REGISTRY.current_test = item.nodeid
    try:
        return (yield)
    finally:
        tests.secret_registry.settings_secrets_register()  # the values the test's ``settings`` overrides set


def pytest_sessionfinish(session, exitstatus):
    leaks = tests.secret_registry.REGISTRY.leaks()
    if leaks:
        lines = [f"  {secret[:6]}…{secret[-2:]} logged by {where}" for secret, where in sorted(leaks.items())]
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "\nSECRET LEAK: these secrets appeared in log records:\n" + "\n".join(lines)
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = 1


@pytest.fixture
def secret_registry():
    """Register any secret a test creates by hand: ``secret_registry.add(value)``."""
    return tests.secret_registry.REGISTRY
