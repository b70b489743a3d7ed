"""Celery tasks of the shared kernel: thin doors into core.services, safe to run twice."""

from celery import shared_task

from . import services


@shared_task(name="core.reconciliation_run")
def reconciliation_run_task() -> int:
    """Nightly: re-derive cached numbers and record drift. Returns how many drifts are open now."""
    return len(services.reconciliation_run())
