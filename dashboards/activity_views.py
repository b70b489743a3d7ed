"""The Activity pages: every call of the current workspace, paged (``/activity/``), one call
(``/activity/<call_id>/``), and the filtered range as CSV (``/activity/export.csv``).

Filters come from the query string and are validated here; anything unusable is dropped with a
note on the page (never a 500). Members whose role has ``keys.manage_any`` see every call and may
filter by member; other members see the calls of the keys they created (the key list's rule).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from accounts.selectors import api_key_list
from accounts.tenancy import page_context_get

from .selectors.activity import (
    EXPORT_HEADER,
    ActivityFilter,
    activity_call_get,
    activity_export_rows,
    activity_page_get,
    cursor_decode,
)

# The labels are shown on the page only (the query string and the CSV keep the codes).
STATUS_CHOICES = (
    ("ok", gettext_lazy("Succeeded")),
    ("error", gettext_lazy("Failed")),
    ("400", gettext_lazy("400 invalid request")),
    ("401", gettext_lazy("401 invalid key")),
    ("402", gettext_lazy("402 insufficient credits")),
    ("403", gettext_lazy("403 forbidden")),
    ("413", gettext_lazy("413 too large")),
    ("429", gettext_lazy("429 rate or quota limit")),
    ("502", gettext_lazy("502 upstream error")),
    ("503", gettext_lazy("503 no provider")),
    ("504", gettext_lazy("504 upstream timeout")),
)
MODEL_MAX_LENGTH = 128  # UsageEvent.model
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)  # a range the page can show
FILTER_PARAMS = ("key", "member", "model", "status", "from", "to")


@dataclass
class _Filters:
    """What the query string asked for, once validated: the selector's filter, the values to
    redisplay and carry in links, and a note per value that was dropped."""

    filter: ActivityFilter
    values: dict[str, str]
    notes: list[str] = field(default_factory=list)

    @property
    def query(self) -> str:
        return urlencode({name: value for name, value in self.values.items() if value})


def _id_in(raw: str, allowed: set[int]) -> int | None:
    return int(raw) if raw.isdigit() and len(raw) < 12 and int(raw) in allowed else None


def _day(raw: str) -> date | None:
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        return None
    return day if FIRST_DAY <= day <= LAST_DAY else None


def _filters_parse(params, *, keys, members) -> _Filters:
    notes, values = [], dict.fromkeys(FILTER_PARAMS, "")
    raw = {name: params.get(name, "").strip() for name in FILTER_PARAMS}

    key_id = _id_in(raw["key"], {key.pk for key in keys}) if raw["key"] else None
    if raw["key"] and key_id is None:
        notes.append(_("Unknown key filter ignored."))
    member_id = _id_in(raw["member"], {member.pk for member in members}) if raw["member"] else None
    if raw["member"] and member_id is None:
        notes.append(_("Unknown member filter ignored."))
    model = raw["model"]
    if len(model) > MODEL_MAX_LENGTH or "\x00" in model:
        notes.append(_("Model filter ignored: not a model name."))
        model = ""
    status = raw["status"]
    if status and status not in ("ok", "error") and not (status.isdigit() and 100 <= int(status) <= 599):
        notes.append(_("Unknown status filter ignored."))
        status = ""
    since_day, until_day = (_day(raw[name]) if raw[name] else None for name in ("from", "to"))
    for name, day in (("from", since_day), ("to", until_day)):
        if raw[name] and day is None:
            notes.append(_("The “%(name)s” date is not a date (YYYY-MM-DD); ignored.") % {"name": name})
    if since_day and until_day and since_day > until_day:
        notes.append(_("The range ends before it starts; dates ignored."))
        since_day = until_day = None
    values.update(
        key=str(key_id or ""),
        member=str(member_id or ""),
        model=model,
        status=status,
        **{
            "from": since_day.isoformat() if since_day else "",
            "to": until_day.isoformat() if until_day else "",
        },
    )
    return _Filters(
        filter=ActivityFilter(
            api_key_id=key_id,
            member_id=member_id,
            model=model,
            status=status,
            since=_day_start(since_day) if since_day else None,
            until=_day_start(until_day + timedelta(days=1)) if until_day else None,
        ),
        values=values,
        notes=notes,
    )


def _day_start(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


@dataclass
class _Scope:
    """The workspace context, whose calls the member sees (``viewer``: None for all), the keys
    and members they may filter by, and the parsed filters."""

    context: object
    viewer: object
    keys: list
    members: list
    filters: _Filters


def _scope(request) -> _Scope:
    ctx = page_context_get(request, "usage.read")
    sees_all = ctx.can("keys.manage_any")
    viewer = None if sees_all else ctx.user
    keys = list(api_key_list(workspace=ctx.workspace, created_by=viewer))
    members = []
    if sees_all:  # the creators of the workspace's keys (former members' keys included)
        creators = {key.created_by_id: key.created_by for key in keys if key.created_by_id}
        members = sorted(creators.values(), key=lambda member: member.email)
    filters = _filters_parse(request.GET, keys=keys, members=members)
    return _Scope(context=ctx, viewer=viewer, keys=keys, members=members, filters=filters)


def _page_url(filters: _Filters, cursor: str) -> str:
    query = urlencode({**{k: v for k, v in filters.values.items() if v}, "cursor": cursor})
    return f"{reverse('dashboards:activity')}?{query}"


@login_required
@require_GET
def activity(request):
    """The workspace's calls, newest first, 50 a page with Older/Newer links (keyset cursor)."""
    scope = _scope(request)
    notes = list(scope.filters.notes)
    raw_cursor = request.GET.get("cursor", "")
    cursor = cursor_decode(raw_cursor) if raw_cursor else None
    if raw_cursor and cursor is None:
        notes.append(_("That page link is not valid any more; here are the newest calls."))
    page = activity_page_get(
        workspace=scope.context.workspace, viewer=scope.viewer, filters=scope.filters.filter, cursor=cursor
    )
    query = scope.filters.query
    context = {
        "workspace_context": scope.context,
        "sees_all": scope.viewer is None,
        "calls": page.calls,
        "older_url": _page_url(scope.filters, page.older) if page.older else "",
        "newer_url": _page_url(scope.filters, page.newer) if page.newer else "",
        "is_first_page": cursor is None,
        "newest_url": reverse("dashboards:activity") + (f"?{query}" if query else ""),
        "api_keys": scope.keys,
        "members": scope.members,
        "filters": scope.filters.values,
        "filtered": bool(query),
        "filter_notes": notes,
        "status_choices": STATUS_CHOICES,
        "status_other": scope.filters.values["status"] not in dict(STATUS_CHOICES),
        "export_url": reverse("dashboards:activity-export") + (f"?{query}" if query else ""),
    }
    return render(request, "dashboards/activity.html", context)


activity.permission_required = {"get": "usage.read"}  # read by the workspace sweep (tests/)


@login_required
@require_GET
def activity_detail(request, call_id):
    """One call of the workspace (for a member without ``keys.manage_any``: of their own keys)."""
    scope = _scope(request)
    call = activity_call_get(workspace=scope.context.workspace, viewer=scope.viewer, call_id=call_id)
    if call is None:
        raise Http404("No such call in this workspace.")
    return render(
        request,
        "dashboards/activity_detail.html",
        {"workspace_context": scope.context, "call": call, "back_url": reverse("dashboards:activity")},
    )


activity_detail.permission_required = {"get": "usage.read"}

# A cell a spreadsheet would read as a formula (OWASP "CSV injection") gets a leading quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_EXPORT_FLUSH_ROWS = 1_000


def _cell(value):
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv_lines(rows):
    """CSV text in pieces of ``_EXPORT_FLUSH_ROWS`` rows, header first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_HEADER)
    for count, row in enumerate(rows, start=1):
        writer.writerow([_cell(value) for value in row])
        if count % _EXPORT_FLUSH_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@login_required
@require_GET
def activity_export(request):
    """The filtered range as CSV, streamed: rows are read 2 000 at a time while the file goes
    out. Unusable filters send the member back to the page, which says why."""
    scope = _scope(request)
    if scope.filters.notes:
        return redirect(f"{reverse('dashboards:activity')}?{request.GET.urlencode()}")
    rows = activity_export_rows(
        workspace=scope.context.workspace, viewer=scope.viewer, filters=scope.filters.filter
    )
    response = StreamingHttpResponse(_csv_lines(rows), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_-]", "", scope.context.workspace.slug)
    filename = f"tollgate-activity-{slug}-{stamp}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


activity_export.permission_required = {"get": "usage.read"}
