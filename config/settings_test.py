"""The test suite's settings (pytest-django's ``DJANGO_SETTINGS_MODULE``): the product's own,
plus what keeps tests fast and in one process.

The servers a test starts (gunicorn or uvicorn in a subprocess, the bench) run
``config.settings``, as production does.
"""

from .settings import *  # noqa: F403
from .settings import DATABASES, env

TESTING = True

# A connection per test thread, closed by the test run; a pool would outlive the test database.
if not env.bool("DATABASE_POOL", default=False):
    DATABASES["default"]["OPTIONS"].pop("pool", None)
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)

# Tasks run inline, inside the test, with their errors raised there: REDIS_URL doubles as the
# broker, and no test may publish to it.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True

# Passwords hashed in microseconds: the suite creates many users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
