"""What the tests that start the production server (gunicorn + uvicorn workers) share."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from devservers.state import free_port

__all__ = ("free_port", "gunicorn_served", "server_env")

BASE_DIR = Path(__file__).resolve().parent.parent


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


@contextlib.contextmanager
def gunicorn_served(*, workers: int = 2):
    """(url, process) of gunicorn with ``workers`` uvicorn workers on the test database and the
    test Redis: separate processes with their own memory, as deployed (only Redis and PostgreSQL
    are shared). Stopped on exit."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.asgi:application",
            "-k",
            "uvicorn.workers.UvicornWorker",
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=BASE_DIR,
        env=server_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("gunicorn did not start")
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
