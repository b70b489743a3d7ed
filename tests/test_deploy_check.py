"""Production settings: ``manage.py check --deploy`` is clean, and production refuses to start
without its secrets. Run in subprocesses: settings are read once per process."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent


def _production_env(**overrides) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("DATABASE_", "DJANGO_", "SECRET_KEY", "SALT_KEY", "ALLOWED_HOSTS", "TOLLGATE_")
        )
    }
    env.update(
        DJANGO_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(64),
        SALT_KEY="prod-salt-" + secrets.token_hex(16),
        ALLOWED_HOSTS="tollgate.example.com",
        REDIS_URL="redis://127.0.0.1:6379/15",  # not connected to by the checks
        STRIPE_WEBHOOK_SECRET="whsec_" + secrets.token_hex(16),
        TOLLGATE_TESTING="0",
    )
    env.update(overrides)
    return env


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_has_no_warnings_in_production_mode():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=_production_env())

    output = result.stdout + result.stderr
    issues = [
        line
        for line in output.splitlines()
        if line.startswith("?: (")
        or line.startswith(("security.", "django_", "accounts.", "core."))
        or ": (" in line
    ]
    assert not issues, "\n".join(issues)
    assert result.returncode == 0, output


@pytest.mark.parametrize("missing", ["SECRET_KEY", "SALT_KEY", "ALLOWED_HOSTS"])
def test_production_refuses_to_start_without_its_secrets(missing):
    env = _production_env()
    env.pop(missing)

    result = _manage("check", env=env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and missing in result.stderr


def test_production_serves_the_security_headers():
    code = (
        "import django; django.setup();"
        "from django.conf import settings as s;"
        "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE,"
        " s.SECURE_HSTS_SECONDS >= 31536000, s.SECURE_CONTENT_TYPE_NOSNIFF, s.X_FRAME_OPTIONS,"
        " s.DEBUG, s.SIMULATED_CHECKOUT_ENABLED, s.SANDBOX_PROVIDER_ENABLED)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={**_production_env(), "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.stdout.split() == [
        "True",
        "True",
        "True",
        "True",
        "True",
        "DENY",
        "False",
        "False",
        "False",
    ]


def test_an_empty_database_url_means_the_embedded_sqlite_database():
    env = {key: value for key, value in os.environ.items() if not key.startswith("DATABASE_")}
    env.update(DATABASE_URL="", TOLLGATE_TESTING="1")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.DATABASES['default']['ENGINE'])",
        ],
        cwd=BASE_DIR,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.db.backends.sqlite3"
