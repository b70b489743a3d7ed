"""Shared by the Activity tests: reading the page as a browser would (rows, links) and writing
many calls fast."""

from __future__ import annotations

import html
import re
from datetime import datetime

from django.db import connection

from proxy.models import UsageEvent

ROW = re.compile(r'<tr data-call-id="([0-9a-f-]{36})"')


def call_ids(page_html: str) -> list[str]:
    """The call ids of the page's rows, top to bottom."""
    return ROW.findall(page_html)


def link(page_html: str, rel: str) -> str | None:
    """The href of the pager's ``rel="next"`` (Older) or ``rel="prev"`` (Newer) link."""
    found = re.search(rf'<a class="button secondary" href="([^"]+)" rel="{rel}">', page_html)
    return html.unescape(found.group(1)) if found else None


def calls_insert(*, workspace, count: int, newest: datetime, api_key=None, step_ms: int = 10) -> None:
    """``count`` calls of ``workspace`` in one INSERT … SELECT (PostgreSQL draws the rows): the
    newest at ``newest``, each one ``step_ms`` older; every third an upstream error, every
    seventh paid with credits, the key name of ``api_key`` when given."""
    table = UsageEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO "{table}" (call_id, workspace_id, api_key_id, service, endpoint, provider, model,
                upstream_model, prompt_tokens, completion_tokens, total_tokens, emails, cost_usd,
                credits_charged, status_code, error_code, latency_ms, key_source, is_fallback,
                is_budget_fallback, is_estimated, request_id, created_at)
            SELECT gen_random_uuid(), %(workspace)s, %(key)s, 'router', '/v1/chat/completions', 'deepseek',
                'deepseek-chat', 'deepseek-chat', 10 + n %% 50, 20 + n %% 70, 30 + n %% 50 + n %% 70, 0,
                0.000123, CASE WHEN n %% 7 = 0 THEN 2 ELSE 0 END,
                CASE WHEN n %% 3 = 0 THEN 502 ELSE 200 END,
                CASE WHEN n %% 3 = 0 THEN 'upstream_error' ELSE '' END,
                100 + n %% 400, 'global', false, false, false, 'req-' || n,
                %(newest)s - make_interval(secs => n * %(step)s / 1000.0)
            FROM generate_series(0, %(count)s - 1) AS n
            """,  # the table name is the model's, every value a parameter
            {
                "workspace": workspace.pk,
                "key": api_key.pk if api_key else None,
                "newest": newest,
                "step": step_ms,
                "count": count,
            },
        )
