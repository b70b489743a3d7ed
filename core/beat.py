"""The periodic tasks (Celery beat schedule), registered by the apps that own them.

Each app adds its entries in ``AppConfig.ready()``; ``config.celery`` hands this registry to
Celery as ``beat_schedule``, so no app imports ``config``. ``ready()`` runs on
``django.setup()``, which a worker or ``celery beat`` does before it reads the schedule. Every
entry expires, so a beat that was down does not flood the workers with stale runs when it comes
back.
"""

from __future__ import annotations

from typing import Any

# name -> Celery beat entry; the one dict Celery reads (see beat_schedule()).
_schedule: dict[str, dict[str, Any]] = {}


def beat_schedule_add(name: str, *, task: str, schedule: Any, expires: float) -> None:
    """Run ``task`` on ``schedule`` (a ``crontab`` or seconds); a run not started within
    ``expires`` seconds is dropped."""
    _schedule[name] = {"task": task, "schedule": schedule, "options": {"expires": expires}}


def beat_schedule() -> dict[str, dict[str, Any]]:
    """The registry itself (not a copy): Celery keeps it as ``beat_schedule`` and sees the
    entries added after it was configured."""
    return _schedule
