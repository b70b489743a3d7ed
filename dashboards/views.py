"""Dashboard pages: the customer's dashboard, the API guide, the operator dashboard inside the
admin, and the Prometheus scrape endpoint."""

from __future__ import annotations

import dataclasses
import hmac

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from accounts.roles import ROLE_LABELS
from accounts.selectors import api_key_list
from accounts.tenancy import page_context_get, workspace_context_get
from billing.selectors import plan_list_public
from core.exceptions import ERROR_CODES, ApiError, error_body
from core.metrics import metrics_exposition_get

from .billing_views import plan_card_context
from .charts import bar_chart_svg
from .labels import QUOTA_LABELS, QUOTA_PERIODS
from .selectors import business, customer, operator, spend

# The docs page's "Meaning" column: in the reader's language (the codes are the contract).
ERROR_MEANINGS = {
    "invalid_request": gettext_lazy("The body or a parameter is invalid; `param` names the field."),
    "invalid_json": gettext_lazy("The body is not valid JSON."),
    "invalid_api_key": gettext_lazy("Missing, malformed, revoked or expired key."),
    "not_authenticated": gettext_lazy("No credentials were sent."),
    "insufficient_credits": gettext_lazy(
        "Your quota is used up and your credit balance cannot pay for the call; "
        "the body lists packs and a buy URL."
    ),
    "forbidden": gettext_lazy(
        "Your role in the workspace may not do this (`required_role` lists the roles that "
        "may), or the endpoint is staff-only."
    ),
    "not_found": gettext_lazy("No such object — or it belongs to a workspace you are not a member of."),
    "method_not_allowed": gettext_lazy("Wrong HTTP method for this endpoint."),
    "not_acceptable": gettext_lazy("The Accept header asks for a format we do not serve."),
    "conflict": gettext_lazy("The object is not in a state that allows this."),
    "payload_too_large": gettext_lazy("The body is larger than the configured maximum."),
    "unsupported_media_type": gettext_lazy("Send `Content-Type: application/json`."),
    "rate_limit_exceeded": gettext_lazy(
        "Too many requests this minute for this key; wait `Retry-After` seconds."
    ),
    "quota_exceeded": gettext_lazy("A plan quota is used up; the body carries the quota and upsell links."),
    "too_many_failed_authentications": gettext_lazy(
        "Too many refused API keys from your address this minute; wait `Retry-After` seconds."
    ),
    "server_error": gettext_lazy("Our fault. Retry later; the request id helps support."),
    "upstream_error": gettext_lazy("The provider failed; nothing was charged."),
    "no_provider_available": gettext_lazy("No provider (or provider key) can serve this call right now."),
    "service_unavailable": gettext_lazy("Temporarily unavailable; retry later."),
    "upstream_timeout": gettext_lazy("The provider did not answer in time; nothing was charged."),
}


OVERVIEW_CALLS = 10  # the Activity page lists and filters them all

SPEND_TITLES = {
    "24h": gettext_lazy("Spend, last 24 h"),
    "7d": gettext_lazy("Spend, last 7 days"),
    "30d": gettext_lazy("Spend, last 30 days"),
}
SPEND_RANGE_LABELS = {
    "24h": gettext_lazy("24 h"),
    "7d": gettext_lazy("7 days"),
    "30d": gettext_lazy("30 days"),
}


def _quota_bars(*, workspace, now) -> list:
    """The quota bars with their meter and period in the reader's language."""
    return [
        dataclasses.replace(
            bar,
            label=str(QUOTA_LABELS.get(bar.meter, bar.label)),
            period=str(QUOTA_PERIODS.get(bar.period, bar.period)),
        )
        for bar in customer.quota_bars_get(workspace=workspace, now=now)
    ]


def _spend_section(request, *, workspace, created_by, now) -> dict:
    """The Spend card: the period asked in the query string (``range``, or ``from``/``to``),
    else the last 30 days with a note; its summary and the chart of credits per bucket."""
    zone = timezone.get_current_timezone()  # the viewer's (core.timezones)
    notes = []
    try:
        period = spend.spend_period_get(
            now=now,
            zone=zone,
            range_key=request.GET.get("range"),
            date_from=request.GET.get("from"),
            date_to=request.GET.get("to"),
        )
    except ApiError as exc:
        # The reason is the selector's (English, as the API says it); the rest is the page's.
        notes.append(_("%(reason)s Showing the last 30 days.") % {"reason": exc.message})
        period = spend.spend_period_get(now=now, zone=zone)
    summary = spend.spend_summary_get(workspace=workspace, period=period, created_by=created_by)
    per = "hour" if period.hourly else "day"
    chart = bar_chart_svg(
        [(b.start if period.hourly else b.start.date(), b.charge_credits) for b in summary.buckets],
        label=_("Credits charged per hour") if period.hourly else _("Credits charged per day"),
        unit=_("credits"),
        css_class="bars bars--credits",
        tick_format="%H:%M" if period.hourly else "%b %d",
        tip_format="%b %d %H:%M" if period.hourly else None,
    )
    return {
        "summary": summary,
        "period": period,
        "per": per,
        "chart": chart,
        "notes": notes,
        "ranges": SPEND_RANGE_LABELS,
        "range_label": str(SPEND_RANGE_LABELS.get(period.range, "")),
        "title": str(SPEND_TITLES.get(period.range, "")),
    }


@login_required
@require_GET
def dashboard(request):
    """Overview of the current workspace (the switcher's choice, else the personal one): plan
    and quotas, credits, usage, spend and the last calls. Keys, billing and members have their
    own pages; money shows only to roles with ``billing.read``."""
    ctx = page_context_get(request)
    ctx.require_page("usage.read")
    workspace = ctx.workspace
    can = ctx.permissions
    now = timezone.now()
    today = now.date()
    # Owners and admins see every call, other members the calls of the keys they created (as
    # the Activity page).
    created_by = None if "keys.manage_any" in can else ctx.user
    series = customer.usage_daily_series_get(workspace=workspace, today=today)
    shows_money = "billing.read" in can
    credit_spend = customer.credit_spend_daily_get(workspace=workspace, today=today) if shows_money else []
    providers = customer.usage_provider_totals_get(workspace=workspace, today=today)
    peak_provider = max((row["requests"] for row in providers), default=0)
    for row in providers:
        row["percent"] = row["requests"] * 100 // peak_provider if peak_provider else 0
    calls = list(
        customer.usage_recent_calls_list(workspace=workspace, created_by=created_by, limit=OVERVIEW_CALLS)
    )
    context = {
        "workspace_context": ctx,
        "perms_ws": can,
        "role_label": str(ROLE_LABELS.get(ctx.role, ctx.role)).lower(),
        **plan_card_context(workspace=workspace, now=now),
        "quota_bars": _quota_bars(workspace=workspace, now=now),
        "tokens_chart": bar_chart_svg(
            [(d.day, d.tokens) for d in series], label=_("Tokens per day, last 30 days"), unit=_("tokens")
        ),
        "emails_chart": bar_chart_svg(
            [(d.day, d.emails) for d in series],
            label=_("Emails per day, last 30 days"),
            unit=_("emails"),
            css_class="bars bars--emails",
        ),
        "credits_chart": bar_chart_svg(
            credit_spend, label=_("Credits spent per day"), unit=_("credits"), css_class="bars bars--credits"
        )
        if shows_money
        else "",
        "totals": {
            "requests": sum(d.requests for d in series),
            "tokens": sum(d.tokens for d in series),
            "emails": sum(d.emails for d in series),
            "credits": sum(v for _, v in credit_spend),
        },
        "providers": providers,
        "calls": calls,
        "has_keys": bool(calls) or api_key_list(workspace=workspace, created_by=created_by).exists(),
        "spend": _spend_section(request, workspace=workspace, created_by=created_by, now=now),
    }
    return render(request, "dashboards/dashboard.html", context)


dashboard.permission_required = {"get": "usage.read"}  # read by the workspace sweep (tests/)


def _guide_key_prefix(request) -> str | None:
    """The prefix of a usable key the visitor created in their current workspace, for the
    examples; None for a visitor, or when they have none there."""
    if not request.user.is_authenticated:
        return None
    try:
        ctx = workspace_context_get(request)
    except ApiError:  # an X-Workspace the visitor does not belong to: a guide without a key
        return None
    own = api_key_list(workspace=ctx.workspace, created_by=request.user)
    usable = next((k for k in own if k.is_usable() and not k.expires_at), None)
    return usable.prefix if usable else None


@require_GET
def api_guide(request):
    """The human API guide; examples carry the visitor's own key prefix when logged in."""
    prefix = _guide_key_prefix(request)
    errors = [
        {"code": code, "status": status, "type": error_type, "meaning": ERROR_MEANINGS.get(code, "")}
        for code, (status, error_type) in ERROR_CODES.items()
    ]
    return render(
        request,
        "dashboards/docs.html",
        {
            "key_example": f"{prefix}…" if prefix else f"{settings.PROXY_KEY_PREFIX}YOUR_KEY",
            "has_key": bool(prefix),
            "base_url": settings.SITE_URL,
            "errors": errors,
            "plans": plan_list_public(),
        },
    )


def operator_dashboard(request):
    """``/admin/dashboard/``: the operator's view, inside the admin (wrapped by admin_view).
    ``?since=&until=`` (YYYY-MM-DD) set the economics range; bad input shows the default."""
    now = timezone.now()
    period = business.date_range_parse(
        since=request.GET.get("since"), until=request.GET.get("until"), today=now.date()
    )
    data = operator.operator_dashboard_get(now=now, since=period.since, until=period.until)
    budget = data["budget"]
    trend = data["business"]["trend"]
    context = {
        **admin.site.each_context(request),
        "title": _("Operator dashboard"),
        "data": data,
        "range_notes": period.notes,
        "budget_bar": min(int(budget.percent_used), 100),
        "trend_charts": {
            "mrr": bar_chart_svg(
                [(p["week"], p["mrr"]["usd"]) for p in trend], label=_("MRR per week (USD)"), unit="USD"
            ),
            "paid": bar_chart_svg(
                [(p["week"], p["paid"]) for p in trend],
                label=_("Paid subscriptions per week"),
                unit=_("subscriptions"),
            ),
            "trials": bar_chart_svg(
                [(p["week"], p["trials"]) for p in trend], label=_("Trials per week"), unit=_("trials")
            ),
            "churn": bar_chart_svg(
                [(p["week"], p["churned"]) for p in trend],
                label=_("Churned subscriptions per week"),
                unit=_("churned"),
            ),
            "failed": bar_chart_svg(
                [(p["week"], p["failed_payments"]["total"]) for p in trend],
                label=_("Failed payments per week"),
                unit=_("failed"),
            ),
        },
    }
    return render(request, "admin/dashboard.html", context)


def _metrics_allowed(request) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if (
        token
        and header.startswith("Bearer ")
        and hmac.compare_digest(header[7:].strip().encode(), token.encode())
    ):
        return True
    return request.META.get("REMOTE_ADDR", "") in settings.METRICS_ALLOWED_IPS


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@require_GET
def metrics(request):
    """Prometheus text format: gauges computed at scrape time from the rollups and the budget
    counter, then the request and upstream latency histograms (``core.metrics``)."""
    if not _metrics_allowed(request):
        return JsonResponse(error_body("forbidden", "Metrics need the bearer token."), status=403)
    snapshot = operator.metrics_snapshot_get()
    lines = [
        "# HELP tollgate_requests_today Proxied calls today (UTC) per provider.",
        "# TYPE tollgate_requests_today gauge",
    ]
    providers = snapshot["providers"]
    lines += [
        f'tollgate_requests_today{{provider="{_label(p["provider"])}"}} {p["requests_count"]}'
        for p in providers
    ]
    lines += [
        "# HELP tollgate_errors_today Failed calls today (UTC) per provider.",
        "# TYPE tollgate_errors_today gauge",
    ]
    lines += [
        f'tollgate_errors_today{{provider="{_label(p["provider"])}"}} {p["errors_count"]}' for p in providers
    ]
    lines += [
        "# HELP tollgate_provider_spend_usd_today Operator spend today per provider (USD).",
        "# TYPE tollgate_provider_spend_usd_today gauge",
    ]
    lines += [
        f'tollgate_provider_spend_usd_today{{provider="{_label(p["provider"])}"}} {p["cost_total"]}'
        for p in providers
    ]
    recent = snapshot["recent"]
    calls = recent["calls"] or 0
    budget = snapshot["budget"]
    lines += [
        "# HELP tollgate_requests_5m Proxied calls in the last 5 minutes.",
        "# TYPE tollgate_requests_5m gauge",
        f"tollgate_requests_5m {calls}",
        "# HELP tollgate_request_latency_ms_sum_5m Sum of call latencies in the last 5 minutes (ms).",
        "# TYPE tollgate_request_latency_ms_sum_5m gauge",
        f"tollgate_request_latency_ms_sum_5m {recent['latency_ms'] or 0}",
        "# HELP tollgate_upstream_errors_5m Calls that ended in 502/503/504 in the last 5 minutes.",
        "# TYPE tollgate_upstream_errors_5m gauge",
        f"tollgate_upstream_errors_5m {recent['upstream_errors'] or 0}",
        "# HELP tollgate_spend_usd_today Operator spend today, reservations in flight included (USD).",
        "# TYPE tollgate_spend_usd_today gauge",
        f"tollgate_spend_usd_today {budget.spent_usd}",
        "# HELP tollgate_budget_limit_usd The daily budget (USD).",
        "# TYPE tollgate_budget_limit_usd gauge",
        f"tollgate_budget_limit_usd {budget.limit_usd}",
        "# HELP tollgate_budget_percent_used Share of the daily budget spent (percent).",
        "# TYPE tollgate_budget_percent_used gauge",
        f"tollgate_budget_percent_used {budget.percent_used}",
    ]
    body = "\n".join(lines) + "\n" + metrics_exposition_get()  # + the latency histograms, all workers
    return HttpResponse(body, content_type="text/plain; version=0.0.4; charset=utf-8")
