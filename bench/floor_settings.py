"""Tollgate's settings with the framework floor's URLconf (``bench.floor_django``); bench only."""

import os

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.floor_django"
FLOOR_UPSTREAM_URL = os.environ.get("FLOOR_UPSTREAM_URL", "")
