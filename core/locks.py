"""Row locks taken in primary-key order, so two transactions never deadlock on the same set."""

from django.db.models import QuerySet


def lock_objects(queryset: QuerySet) -> list:
    """Lock the rows of ``queryset`` (inside ``transaction.atomic``) in pk order."""
    return list(queryset.select_for_update().order_by("pk"))
