"""What the tests that start the production server (gunicorn + uvicorn workers) share."""

from __future__ import annotations

import os

from django.conf import settings

from devservers.state import free_port

__all__ = ("free_port", "server_env")


def server_env() -> dict[str, str]:
    """The environment of a server process on the test database and the test Redis."""
    database = settings.DATABASES["default"]
    return {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{database['USER']}:{database.get('PASSWORD') or ''}"
            f"@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}"
        ),
        "REDIS_URL": settings.REDIS_URL,
        "CACHE_KEY_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", ""),
        "DATABASE_POOL": "false",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
