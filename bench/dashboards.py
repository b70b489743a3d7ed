"""Dashboards bench: with N usage events in the database, time the three dashboards and the
admin's big changelists, plain, filtered and searched (p50 of 20).

Runs against its own database (``tollgate_bench_dashboards`` by default) so that a million
synthetic events never mix with the hot-path runs' accounting. The events come from the proxy's
usage generator (``proxy.usage_generator``, 500 users' workspaces over 90 days, the tenant's as the
heavy one with 5 %); they are generated once and reused by later runs while at least N are present.
"""

from __future__ import annotations

import statistics
import time
import uuid
from urllib.parse import quote

import httpx
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.db.models import Count

from accounts.models import Workspace
from bench.environment import step
from proxy.models import UsageEvent
from proxy.usage_generator import GENERATED_MARKER, usage_events_generate

# The customer's pages, opened by the heavy workspace's owner; the other routes by an operator.
CUSTOMER_ROUTES = {
    "dashboard_ms": "/dashboard/",
    "activity_ms": "/activity/",
    "keys_ms": "/keys/",
    "billing_ms": "/billing/",
}
ROUTES = {
    **CUSTOMER_ROUTES,
    "admin_dashboard_ms": "/admin/dashboard/",
    "api_admin_dashboard_ms": "/api/admin/dashboard",
    # The admin's changelists over the big tables (core/admin_lists.py); ``{email}`` is the heavy
    # user's, ``{request_id}`` an id no event has (the index lookup finds nothing: the worst case).
    "admin_usage_list_ms": "/admin/proxy/usageevent/",
    "admin_usage_page_5_ms": "/admin/proxy/usageevent/?p=5",
    "admin_usage_filtered_ms": "/admin/proxy/usageevent/?provider=deepseek&status=5xx",
    "admin_usage_search_email_ms": "/admin/proxy/usageevent/?q={email}",
    "admin_usage_search_request_id_ms": "/admin/proxy/usageevent/?q={request_id}",
    "admin_rollup_list_ms": "/admin/proxy/usagedailyrollup/",
    "admin_rollup_search_email_ms": "/admin/proxy/usagedailyrollup/?q={email}",
    "admin_ledger_list_ms": "/admin/credits/ledgerentry/",
    "admin_stripe_events_ms": "/admin/billing/stripeevent/",
}
SAMPLES = 20


def _session_cookie(user) -> str:
    """A logged-in session for ``user``, created the way ``django.contrib.auth.login`` stores it."""
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def _generated_state():
    """(generated event count, the workspace with the most of them) already in the database."""
    generated = UsageEvent.objects.filter(request_id=GENERATED_MARKER)
    total = generated.count()
    top = generated.values("workspace_id").annotate(n=Count("id")).order_by("-n").first() if total else None
    return total, (top["workspace_id"] if top else None)


def route_time(*, base_url: str, path: str, cookie_name: str, cookie: str) -> dict:
    """p50 over 20 sequential GETs (after one warm-up); 404 means the route is not there yet."""
    timings, status = [], None
    with httpx.Client(base_url=base_url, cookies={cookie_name: cookie}, timeout=60) as client:
        warm = client.get(path)
        status = warm.status_code
        if status == 404:
            return {"ms": "not available", "status": 404}
        if status != 200:
            return {"ms": f"HTTP {status}", "status": status}
        for _ in range(SAMPLES):
            began = time.perf_counter()
            response = client.get(path)
            timings.append((time.perf_counter() - began) * 1000)
            status = response.status_code
    return {"ms": round(statistics.median(timings), 1), "status": status, "max_ms": round(max(timings), 1)}


def dashboards_bench(bench, *, events: int) -> dict:
    User = get_user_model()
    total, heavy_workspace_id = _generated_state()
    if total < events:
        step(f"generating {events:,} usage events (+ rollups) in PostgreSQL")
        heavy = Workspace.objects.get(pk=bench.tenant.workspace_id)
        generated = usage_events_generate(count=events, users=500, days=90, heavy_workspace=heavy)
        step(f"generated in {generated.seconds:.1f} s")
        heavy_workspace_id = heavy.pk
        total = total + events
    else:
        step(f"reusing {total:,} generated usage events")
    # The heavy workspace is a personal one (the bench tenant's or a generated user's): its owner
    # opens the dashboard, which shows the personal workspace by default.
    end_user = User.objects.get(personal_workspace__pk=heavy_workspace_id)
    staff, _ = User.objects.get_or_create(
        email="bench-operator@bench.invalid",
        defaults={"is_staff": True, "is_superuser": True, "name": "Operator"},
    )
    if not staff.is_staff:
        staff.is_staff = staff.is_superuser = True
        staff.save(update_fields=["is_staff", "is_superuser"])
    base_url = f"http://127.0.0.1:{bench.tollgate_port}"
    # The server runs with DEBUG off and HTTPS cookies; a direct 127.0.0.1 client still sends them.
    result = {"events": total}
    placeholders = {"email": quote(end_user.email), "request_id": uuid.uuid4().hex}
    for key, route in ROUTES.items():
        path = route.format(**placeholders)
        user = end_user if key in CUSTOMER_ROUTES else staff
        timing = route_time(
            base_url=base_url,
            path=path,
            cookie_name=settings.SESSION_COOKIE_NAME,
            cookie=_session_cookie(user),
        )
        result[key] = timing["ms"]
        result[key.replace("_ms", "_status")] = timing["status"]
        print(f"  {path}: {timing['ms']}{' ms' if isinstance(timing['ms'], float) else ''}", flush=True)
    return result
