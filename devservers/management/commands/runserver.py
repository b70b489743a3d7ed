"""``manage.py runserver`` serves Tollgate the way `make run` does: uvicorn, ASGI.

Django's own development server is WSGI: the proxy's async views and streamed answers do not
work there (a ``stream=True`` chat call answered 500, the async pool hung). Rather than a second
server with its own failure modes, this command runs the one `make run` runs: uvicorn, one
worker, reloading on code and template changes, on the address and port given. It does not
start the embedded PostgreSQL and Valkey: run it inside them,
``.venv/bin/python -m devservers -- .venv/bin/python manage.py runserver 8123``, or just use
``make run PORT=8123``.
"""

from __future__ import annotations

import os
import re
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

ADDRPORT = re.compile(r"^(?:(?P<addr>[^:\[\]]+|\[[0-9a-fA-F:]+\]):)?(?P<port>\d+)$")


def uvicorn_argv(*, host: str, port: int, reload: bool) -> list[str]:
    argv = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", host, "--port", str(port)]
    if reload:
        root = settings.BASE_DIR
        watched = sorted(path.parent.name for path in root.glob("*/__init__.py")) + ["templates"]
        argv += ["--reload", "--reload-include", "*.html"]
        for directory in watched:
            argv += ["--reload-dir", str(root / directory)]
    return argv


class Command(BaseCommand):
    help = "Serve over ASGI with uvicorn (as `make run` does); Django's WSGI server is not used."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", help="[address:]port, default 127.0.0.1:$PORT or :8000")
        parser.add_argument("--noreload", action="store_false", dest="use_reloader")
        # Accepted for Django's usual flags; they have no meaning for uvicorn.
        parser.add_argument("--nothreading", action="store_true")
        parser.add_argument("--insecure", action="store_true")
        parser.add_argument("--nostatic", action="store_true")
        parser.add_argument("--ipv6", "-6", action="store_true")

    def handle(self, *args, addrport=None, use_reloader=True, **options):
        host, port = "127.0.0.1", settings.PORT
        if addrport:
            match = ADDRPORT.match(addrport)
            if match is None:
                raise CommandError(f'"{addrport}" is not a port number or address:port pair.')
            host = (match["addr"] or host).strip("[]")
            port = int(match["port"])
        env = dict(os.environ, PORT=str(port))  # SITE_URL follows the port unless set
        argv = uvicorn_argv(host=host, port=port, reload=use_reloader)
        self.stdout.write(
            f"runserver: serving over ASGI with uvicorn (as `make run` does) on http://{host}:{port}/",
            ending="\n",
        )
        self.stdout.flush()
        os.execve(sys.executable, argv, env)  # noqa: S606 - this interpreter, uvicorn's module
