"""Fetch the Stripe events we missed (e.g. an outage longer than Stripe's 3-day webhook retry
window) and store + process them exactly like webhook deliveries.

Idempotent: events already processed are skipped by the event store's unique id, failed or
unprocessed ones are processed again. Stripe keeps events for 30 days.

    manage.py stripe_sync_events --since 2026-11-01T00:00:00Z
    manage.py stripe_sync_events --since 5d
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing.gateways.stripe import StripeServiceError, events_list
from billing.models import StripeEvent
from billing.services import StripeEventProcessingError, stripe_event_process, stripe_event_store

_RELATIVE = re.compile(r"^(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def _since_parse(value: str, *, now: datetime) -> datetime:
    """ISO 8601 (naive = UTC), a unix timestamp, or a relative age such as ``5d`` / ``12h``."""
    match = _RELATIVE.match(value.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if value.strip().isdigit():
        return datetime.fromtimestamp(int(value), tz=UTC)
    parsed = parse_datetime(value.strip().replace("Z", "+00:00"))
    if parsed is None:
        raise CommandError(f"--since: cannot read {value!r} (ISO 8601, unix seconds, or 5d / 12h / 30m)")
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Fetch Stripe events created since a time and store/process those we have not processed."

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, help="ISO 8601 time, unix seconds, or 5d / 12h / 30m")
        parser.add_argument("--page-size", type=int, default=100)

    def handle(self, *args, since: str, page_size: int, **options):
        now = timezone.now()
        since_at = _since_parse(since, now=now)
        if since_at > now:
            raise CommandError("--since is in the future.")
        counts = {"fetched": 0, "new": 0, "processed": 0, "skipped": 0, "failed": 0}
        starting_after = None
        while True:
            try:
                page = events_list(
                    created_gte=int(since_at.timestamp()),
                    starting_after=starting_after,
                    limit=max(1, min(page_size, 100)),
                )
            except StripeServiceError as exc:
                raise CommandError(exc.message) from exc
            events = page.get("data") or []
            for event in events:
                counts["fetched"] += 1
                self._sync_one(event, counts)
            if not page.get("has_more") or not events:
                break
            starting_after = events[-1]["id"]
        self.stdout.write(
            "Stripe events since {since}: {fetched} fetched, {new} new, {processed} processed, "
            "{skipped} already done, {failed} failed.".format(since=since_at.isoformat(), **counts)
        )
        if counts["failed"]:
            self.stderr.write("Failed events are listed in the admin (Stripe events, status failed).")

    def _sync_one(self, event: dict, counts: dict) -> None:
        row, created = stripe_event_store(event=event)
        counts["new"] += int(created)
        if row.status in (StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED):
            counts["skipped"] += 1
            return
        try:
            row = stripe_event_process(event=row)
        except StripeEventProcessingError:
            counts["failed"] += 1  # recorded on the event row with its error
        else:
            # A rejected event (it disagrees with our checkout) is stored as failed, not raised.
            counts["failed" if row.status == StripeEvent.Status.FAILED else "processed"] += 1
