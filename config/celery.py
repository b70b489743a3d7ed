"""Celery application. The beat schedule lives here, in code, with an expiry on every entry."""

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("tollgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Each app appends its periodic tasks here (name -> entry). Entries expire so that a beat that
# was down does not flood the workers with stale runs when it comes back.
app.conf.beat_schedule = {}


def beat_schedule_add(name: str, *, task: str, schedule, expires: int) -> None:
    app.conf.beat_schedule[name] = {
        "task": task,
        "schedule": schedule,
        "options": {"expires": expires},
    }


__all__ = ("app", "beat_schedule_add", "crontab")
