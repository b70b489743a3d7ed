"""Celery tasks: thin, idempotent doors into organizations.services."""

from celery import shared_task

from . import services


@shared_task(name="organizations.usage_report_send")
def usage_report_send_task(report_id: str) -> str | None:
    """Safe to run twice: the service claims the report before sending, so a duplicate run
    finds nothing to do. Failures are retried by the beat job, not by Celery."""
    report = services.usage_report_send(report_id=report_id)
    return report.billing_status if report else None


@shared_task(name="organizations.usage_reports_retry_due")
def usage_reports_retry_due_task() -> int:
    return len(services.usage_reports_retry_due())
