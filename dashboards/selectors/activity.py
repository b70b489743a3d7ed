"""Reads behind the Activity page and its CSV export: one workspace's calls
(``proxy.UsageEvent``), newest first. Nothing here writes.

Paging is a keyset on ``(created_at, id)``, never OFFSET: a page costs what the first costs, and
calls made between two page loads neither repeat on nor push rows off the older pages. The
cursor handed to the browser is signed (``django.core.signing``), so it is opaque and a forged
one is refused instead of reaching the database.

Who sees what (the key list's rule): a member whose role has ``keys.manage_any`` sees every call
of the workspace; any other member sees the calls of the keys they created. ``viewer`` is that
member, or None for "every call". The operator's cost (``cost_usd``) is never read here: it is
not the customer's business.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core import signing
from django.db.models import Q, QuerySet

from proxy.models import UsageEvent

PAGE_SIZE = 50
EXPORT_CHUNK = 2_000
OLDER, NEWER = "older", "newer"
_CURSOR_SALT = "dashboards.activity.cursor"

# The row of the page: what the customer sees of a call (never the operator's cost).
_PAGE_FIELDS = (
    "call_id",
    "created_at",
    "endpoint",
    "provider",
    "model",
    "upstream_model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "emails",
    "status_code",
    "error_code",
    "latency_ms",
    "credits_charged",
    "charge_credits",
    "charge_micros",
    "charge_currency",
    "key_source",
    "is_fallback",
    "is_budget_fallback",
    "is_estimated",
    "api_key__name",
    "api_key__prefix",
)


@dataclass(frozen=True)
class ActivityFilter:
    """Validated filters (the view parses the query string; anything here is trusted)."""

    api_key_id: int | None = None
    member_id: int | None = None  # the creator of the call's key
    model: str = ""  # the model asked for or the one that served
    status: str = ""  # "", "ok", "error" or an HTTP status ("429")
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


def activity_queryset(*, workspace, viewer=None, filters: ActivityFilter | None = None) -> QuerySet:
    """The calls of ``workspace`` that ``viewer`` may see (None: every call), filtered, unordered."""
    filters = filters or ActivityFilter()
    calls = UsageEvent.objects.filter(workspace=workspace)
    if viewer is not None:
        calls = calls.filter(api_key__created_by=viewer)
    if filters.api_key_id is not None:
        calls = calls.filter(api_key_id=filters.api_key_id)
    if filters.member_id is not None:
        calls = calls.filter(api_key__created_by_id=filters.member_id)
    if filters.model:
        calls = calls.filter(Q(model=filters.model) | Q(upstream_model=filters.model))
    if filters.status == "ok":
        calls = calls.filter(status_code__lt=400)
    elif filters.status == "error":
        calls = calls.filter(status_code__gte=400)
    elif filters.status:
        calls = calls.filter(status_code=int(filters.status))
    if filters.since is not None:
        calls = calls.filter(created_at__gte=filters.since)
    if filters.until is not None:
        calls = calls.filter(created_at__lt=filters.until)
    return calls


# --- the cursor ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """A position in the (created_at, id) order and which way to read from it (excluded)."""

    created_at: datetime
    id: int
    direction: str  # OLDER or NEWER


def cursor_encode(cursor: Cursor) -> str:
    return signing.dumps([cursor.created_at.isoformat(), cursor.id, cursor.direction], salt=_CURSOR_SALT)


def cursor_decode(raw: str) -> Cursor | None:
    """The cursor, or None for anything we did not sign (a tampered or truncated link)."""
    try:
        created_at, row_id, direction = signing.loads(raw, salt=_CURSOR_SALT)
        cursor = Cursor(created_at=datetime.fromisoformat(created_at), id=int(row_id), direction=direction)
    except (signing.BadSignature, TypeError, ValueError):
        return None
    if direction not in (OLDER, NEWER) or cursor.created_at.tzinfo is None:
        return None
    return cursor


def _older_than(created_at: datetime, row_id: int) -> Q:
    # ``created_at <= t`` first: a bound the (workspace, -created_at) index can range-scan.
    return Q(created_at__lte=created_at) & (Q(created_at__lt=created_at) | Q(id__lt=row_id))


def _newer_than(created_at: datetime, row_id: int) -> Q:
    return Q(created_at__gte=created_at) & (Q(created_at__gt=created_at) | Q(id__gt=row_id))


# --- the page -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivityPage:
    calls: list  # UsageEvent rows (only the customer's fields), newest first
    older: str | None  # the cursor of the next page down, if there is one
    newer: str | None  # the cursor of the page above, if this is not the newest


def activity_page_get(
    *,
    workspace,
    viewer=None,
    filters: ActivityFilter | None = None,
    cursor: Cursor | None = None,
    size: int = PAGE_SIZE,
) -> ActivityPage:
    """One page of calls, newest first: the newest (no cursor), or the ``size`` calls just older
    or just newer than the cursor. One query (keys and their creators joined)."""
    calls = (
        activity_queryset(workspace=workspace, viewer=viewer, filters=filters)
        .select_related("api_key__created_by")
        .only(*_PAGE_FIELDS, "api_key__created_by__email")
    )
    if cursor is not None and cursor.direction == NEWER:
        rows = list(
            calls.filter(_newer_than(cursor.created_at, cursor.id)).order_by("created_at", "id")[: size + 1]
        )
        has_more_newer = len(rows) > size
        rows = rows[:size][::-1]
        has_more_older = True  # the cursor's own row is older than this page
    else:
        if cursor is not None:
            calls = calls.filter(_older_than(cursor.created_at, cursor.id))
        rows = list(calls.order_by("-created_at", "-id")[: size + 1])
        has_more_older = len(rows) > size
        rows = rows[:size]
        has_more_newer = cursor is not None
    if not rows and cursor is not None:  # paged past an end (a stale link): the newest page
        return activity_page_get(workspace=workspace, viewer=viewer, filters=filters, size=size)
    older = newer = None
    if rows and has_more_older:
        older = cursor_encode(Cursor(created_at=rows[-1].created_at, id=rows[-1].pk, direction=OLDER))
    if rows and has_more_newer:
        newer = cursor_encode(Cursor(created_at=rows[0].created_at, id=rows[0].pk, direction=NEWER))
    return ActivityPage(calls=rows, older=older, newer=newer)


def activity_call_get(*, workspace, viewer=None, call_id) -> UsageEvent | None:
    """One call by its ``call_id``, or None outside the workspace or the viewer's keys."""
    return (
        activity_queryset(workspace=workspace, viewer=viewer)
        .select_related("api_key__created_by")
        .defer("cost_usd")
        .filter(call_id=call_id)
        .first()
    )


# --- what a call was charged --------------------------------------------------------------------


@dataclass(frozen=True)
class Charge:
    """How a call was paid: ``credits`` (overage, ``amount`` credits), ``plan`` (``amount``
    tokens or emails counted against the plan's quota), ``own_key`` (a BYOK call off the quota),
    or ``none`` (a failed call charges nothing)."""

    kind: str
    amount: int
    unit: str  # "credits", "tokens", "emails" or ""


def call_charge(
    *, status_code: int, credits_charged: int, total_tokens: int, emails: int, key_source: str
) -> Charge:
    if status_code >= 400:
        return Charge("none", 0, "")
    if credits_charged:
        return Charge("credits", credits_charged, "credits")
    if emails:
        return Charge("plan", emails, "emails")
    byok = key_source in (UsageEvent.KeySource.WORKSPACE, UsageEvent.KeySource.PERSONAL)
    if byok and not settings.BYOK_COUNTS_AGAINST_QUOTA:
        return Charge("own_key", 0, "")
    return Charge("plan", total_tokens, "tokens")


# --- the export ---------------------------------------------------------------------------------

EXPORT_HEADER = (
    "time_utc",
    "call_id",
    "request_id",
    "key_name",
    "key_prefix",
    "member",
    "endpoint",
    "provider",
    "model",
    "upstream_model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "emails",
    "status_code",
    "error_code",
    "latency_ms",
    "charged_with",
    "charged_amount",
    "charged_unit",
    "charge_credits",
    "charge_amount",  # the charge in money: major units of charge_currency, to the micro
    "charge_currency",
    "is_fallback",
    "is_budget_fallback",
    "is_estimated",
)
_EXPORT_FIELDS = (
    "created_at",
    "call_id",
    "request_id",
    "api_key__name",
    "api_key__prefix",
    "api_key__created_by__email",
    "endpoint",
    "provider",
    "model",
    "upstream_model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "emails",
    "status_code",
    "error_code",
    "latency_ms",
    "credits_charged",
    "charge_credits",
    "charge_micros",
    "charge_currency",
    "key_source",
    "is_fallback",
    "is_budget_fallback",
    "is_estimated",
    "id",
)


def activity_export_rows(
    *, workspace, viewer=None, filters: ActivityFilter | None = None, chunk: int = EXPORT_CHUNK
) -> Iterator[tuple]:
    """Every call of the filtered range as a row of ``EXPORT_HEADER``, newest first, read
    ``chunk`` rows per query (keyset on (created_at, id), tuples from ``values_list``): a
    million calls never sit in memory at once. Calls made while it runs are after its first
    row, so they are not in the file."""
    calls = activity_queryset(workspace=workspace, viewer=viewer, filters=filters).values_list(
        *_EXPORT_FIELDS
    )
    position = None
    while True:
        page = calls if position is None else calls.filter(_older_than(*position))
        rows = list(page.order_by("-created_at", "-id")[:chunk])
        for row in rows:
            yield _export_row(row)
        if len(rows) < chunk:
            return
        position = (rows[-1][0], rows[-1][-1])


def _export_row(row: tuple) -> tuple:
    (
        created_at,
        call_id,
        request_id,
        key_name,
        key_prefix,
        member,
        endpoint,
        provider,
        model,
        upstream_model,
        prompt_tokens,
        completion_tokens,
        total_tokens,
        emails,
        status_code,
        error_code,
        latency_ms,
        credits_charged,
        charge_credits,
        charge_micros,
        charge_currency,
        key_source,
        is_fallback,
        is_budget_fallback,
        is_estimated,
        _id,
    ) = row
    charge = call_charge(
        status_code=status_code,
        credits_charged=credits_charged,
        total_tokens=total_tokens,
        emails=emails,
        key_source=key_source,
    )
    return (
        created_at.isoformat(),
        str(call_id),
        request_id,
        key_name or "",
        key_prefix or "",
        member or "",
        endpoint,
        provider,
        model,
        upstream_model,
        prompt_tokens,
        completion_tokens,
        total_tokens,
        emails,
        status_code,
        error_code,
        latency_ms,
        charge.kind,
        charge.amount,
        charge.unit,
        charge_credits,
        str((Decimal(charge_micros) / 1_000_000).quantize(Decimal("0.000001"))) if charge_currency else "",
        charge_currency.upper(),
        is_fallback,
        is_budget_fallback,
        is_estimated,
    )
