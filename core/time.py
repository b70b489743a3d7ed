"""UTC periods. Monthly quotas reset on the 1st at 00:00 UTC, daily ones at 00:00 UTC."""

from datetime import UTC, datetime, timedelta

from django.utils import timezone


def now() -> datetime:
    return timezone.now()


def day_start(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def next_day_start(at: datetime) -> datetime:
    return day_start(at) + timedelta(days=1)


def month_start(at: datetime) -> datetime:
    return day_start(at).replace(day=1)


def next_month_start(at: datetime) -> datetime:
    start = month_start(at)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def isoformat_z(at: datetime) -> str:
    """ISO 8601 with milliseconds and a Z, the shape clients of the original design expect."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
