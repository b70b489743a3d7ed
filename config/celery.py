"""Celery application. The beat schedule is code: each app registers its entries, each with an
expiry, in ``core.beat`` from its ``AppConfig.ready()``; Celery reads that registry."""

import os

from celery import Celery

from core.beat import beat_schedule

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("tollgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The registry's own dict: the apps fill it on django.setup(), which beat and the worker run
# (Celery's Django fixup) before the scheduler reads it.
app.conf.beat_schedule = beat_schedule()

__all__ = ("app",)
