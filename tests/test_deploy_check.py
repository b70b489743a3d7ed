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
        DATABASE_URL="postgres://tollgate@127.0.0.1:1/tollgate",  # not connected to by the checks
        REDIS_URL="redis://127.0.0.1:6379/15",  # not connected to by the checks
        STRIPE_WEBHOOK_SECRET="whsec_" + secrets.token_hex(16),
        EMAIL_URL="smtp+tls://mailer:" + secrets.token_hex(8) + "@smtp.example.com:587",
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


def test_production_refuses_the_console_email_backend():
    """Unset EMAIL_URL means the console backend: every password-reset link in the log."""
    env = _production_env()
    env.pop("EMAIL_URL")

    refused = _manage("check", env=env)
    migrate = _manage("migrate", "--plan", env={**env, "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"})
    explicit_file = _manage(
        "check", env={**env, "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend"}
    )
    allowed = _manage("check", env={**env, "EMAIL_ALLOW_CONSOLE": "1"})
    development = _manage("check", env={**env, "DJANGO_ENV": "development"})

    assert refused.returncode != 0
    assert "accounts.E002" in refused.stderr and "EMAIL_URL" in refused.stderr
    assert migrate.returncode != 0 and "accounts.E002" in migrate.stderr  # a deploy's first step
    assert explicit_file.returncode != 0 and "accounts.E002" in explicit_file.stderr
    assert allowed.returncode == 0, allowed.stderr
    assert development.returncode == 0, development.stderr


def test_email_url_configures_smtp_with_tls():
    password = secrets.token_hex(8)
    env = _production_env(EMAIL_URL=f"smtp+tls://mailer%40example.com:{password}@smtp.example.com:587")
    code = (
        "import django; django.setup();"
        "from django.conf import settings as s;"
        "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_HOST_USER, s.EMAIL_USE_TLS,"
        " s.EMAIL_HOST_PASSWORD == " + repr(password) + ")"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.stdout.split() == [
        "django.core.mail.backends.smtp.EmailBackend",
        "smtp.example.com",
        "587",
        "mailer@example.com",
        "True",
        "True",
    ], result.stderr
    assert _manage("check", env=env).returncode == 0


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


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"DATABASE_URL": ""}, "DATABASE_URL is not set"),
        ({"DATABASE_URL": "mysql://tollgate@127.0.0.1:1/tollgate"}, "must name a PostgreSQL database"),
        ({"REDIS_URL": ""}, "REDIS_URL is not set"),
    ],
)
def test_settings_refuse_to_start_without_postgresql_and_redis(overrides, message):
    """No other database, no local-memory cache: unset (or a copied .env's empty value), the settings say
    how to get the embedded servers instead of silently running on something else."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DATABASE_")}
    env.update(DATABASE_URL="postgres://tollgate@127.0.0.1:1/tollgate")
    env.update(overrides)
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr
    if "not set" in message:
        assert "make run" in result.stderr and "python -m devservers -- <command>" in result.stderr
