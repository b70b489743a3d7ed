"""Admin changelists over big, append-only tables (the call log, the ledger, webhook events).

Django's defaults cost a scan per page view on such a table: a ``COUNT(*)`` for the pagination,
a second one for "N total", ``SELECT DISTINCT`` for value filters and the date hierarchy, and
``UPPER(col) LIKE '%term%'`` over every search field. ``BigTableAdmin`` keeps each page view to
index work: an estimated count when nothing filters, a capped count otherwise, no full count,
exact-match search on indexed columns, and ordering only by an indexed column.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Q
from django.utils import timezone
from django.utils.functional import cached_property

# Past this many matching rows a filtered list stops counting (pages beyond it are not offered).
COUNT_CAP = 10_000


def table_rows_estimate(*, model, using: str = "default") -> int:
    """PostgreSQL's own row estimate for ``model``'s table (``pg_class.reltuples``, kept by
    autovacuum/ANALYZE); -1 when unknown (never analysed)."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            [model._meta.db_table],
        )
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else -1


class EstimatedCountPaginator(Paginator):
    """Counts without scanning: unfiltered, the planner's estimate when the table is big;
    otherwise ``COUNT(*)`` over at most ``COUNT_CAP + 1`` rows (``SELECT COUNT(*) FROM
    (SELECT … LIMIT n)``), so a broad filter costs a bounded read, not the whole table."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not queryset.query.where:
            estimate = table_rows_estimate(model=queryset.model, using=queryset.db)
            if estimate > COUNT_CAP:
                return estimate
        return queryset.order_by()[: COUNT_CAP + 1].count()


class RecentFilter(admin.SimpleListFilter):
    """Time windows on ``date_field`` (a range on its index), in place of the date hierarchy,
    whose year and month links are ``SELECT DISTINCT date_trunc(…)`` over the whole table."""

    title = "when"
    parameter_name = "recent"
    date_field = "created_at"
    WINDOWS = {
        "1h": ("Last hour", timedelta(hours=1)),
        "24h": ("Last 24 hours", timedelta(days=1)),
        "7d": ("Last 7 days", timedelta(days=7)),
        "30d": ("Last 30 days", timedelta(days=30)),
    }

    def lookups(self, request, model_admin):
        return [(code, label) for code, (label, _) in self.WINDOWS.items()]

    def queryset(self, request, queryset):
        window = self.WINDOWS.get(self.value() or "")
        if window is None:
            return queryset
        return queryset.filter(**{f"{self.date_field}__gte": timezone.now() - window[1]})


def recent_filter(field: str) -> type[RecentFilter]:
    """A ``RecentFilter`` on another date field (``received_at`` for webhook events)."""
    return type(f"Recent{field.title().replace('_', '')}Filter", (RecentFilter,), {"date_field": field})


class BigTableAdmin(admin.ModelAdmin):
    """A changelist that stays index-only at millions of rows.

    Search is exact, never ``icontains``: a term with ``@`` matches the email of the user
    ``user_field`` leads to (by default the owner of the row's personal workspace; emails are
    stored lower-case), any other term matches ``exact_search_fields`` (indexed columns); a UUID
    term also matches ``uuid_search_fields``. Subclasses order by an indexed column and list
    only filters with fixed choices.
    """

    paginator = EstimatedCountPaginator
    show_full_result_count = False  # the "N total" count is a second scan
    list_per_page = 50
    user_field = "workspace__personal_owner"  # path to a user searched by email; "" for none
    exact_search_fields: tuple[str, ...] = ()
    uuid_search_fields: tuple[str, ...] = ()
    # Only indexed columns can be sorted on without a full sort; Django's default is all of them.
    sortable_by: tuple[str, ...] = ()

    def get_search_fields(self, request):
        # Non-empty so the changelist shows its search box; the lookups are ours, below.
        fields = (*self.exact_search_fields, *self.uuid_search_fields)
        return (*fields, f"{self.user_field}__email") if self.user_field else fields

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if "@" in term and self.user_field:
            return queryset.filter(**{f"{self.user_field}__email": term.lower()}), False
        match = Q(pk__in=[])
        for field in self.exact_search_fields:
            match |= Q(**{field: term})
        if self.uuid_search_fields:
            try:
                as_uuid = uuid.UUID(term)
            except ValueError:
                pass  # not a UUID: only the exact fields can match
            else:
                for field in self.uuid_search_fields:
                    match |= Q(**{field: as_uuid})
        return queryset.filter(match), False
