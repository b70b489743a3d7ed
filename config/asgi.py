"""ASGI entry point (production: gunicorn with uvicorn workers).

Tollgate's handler is Django's, minus a per-request thread start on the metered API paths;
see core/asgi.py.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from core.asgi import application  # noqa: F401
