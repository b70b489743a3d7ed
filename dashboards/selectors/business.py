"""Subscription business numbers for the operator dashboard: MRR, live subscriptions by plan,
trials, churn and failed payments, now and over the last 12 ISO weeks. Nothing here writes.

History is read from the subscription rows themselves: a row was live from ``activated_at``
(set when it first became entitled, trial included) until ``ended_at``; a row that never
ended counts only while its status is entitled. Rows keep only their current status, so a
trial that converted counts as paid over its whole history, a row now trialing is never MRR,
and an ended row counts as paid while it was live.

Every number carries the admin changelist URL that lists the rows it counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.db.models import Case, CharField, Count, DecimalField, F, Q, Sum, Value, When
from django.db.models.functions import Cast, Coalesce
from django.urls import reverse
from django.utils import timezone

from billing.models import Gateway, PaymentTransaction, Plan, StripeEvent, Subscription
from proxy.models import UsageDailyRollup, UsageEvent

from .economics import percent_of, rounded, usd_from_minor

TREND_WEEKS = 12
DEFAULT_RANGE_DAYS = 30
MAX_RANGE_DAYS = 366
ENTITLED = [str(status) for status in Subscription.ENTITLED_STATUSES]
PAID = [Subscription.Status.ACTIVE.value, Subscription.Status.PAST_DUE.value]
INVOICE_FAILED = "invoice.payment_failed"
_MONEY = DecimalField(max_digits=20, decimal_places=4)


# =============================================================================================
# Date range
# =============================================================================================


@dataclass(frozen=True)
class DateRange:
    since: date
    until: date
    notes: list[str] = field(default_factory=list)


def date_range_parse(*, since: str | None, until: str | None, today: date) -> DateRange:
    """``?since=YYYY-MM-DD&until=YYYY-MM-DD`` as a range of days. Missing, malformed, reversed,
    future or longer than ``MAX_RANGE_DAYS`` input falls back to the last 30 days with a note."""
    default = DateRange(since=today - timedelta(days=DEFAULT_RANGE_DAYS - 1), until=today)
    if not since and not until:
        return default
    try:
        start = date.fromisoformat(since) if since else default.since
        end = date.fromisoformat(until) if until else today
    except (TypeError, ValueError):
        return _fallback(default, "The dates must look like 2026-01-31; showing the last 30 days.")
    if start > end:
        return _fallback(default, "The start date is after the end date; showing the last 30 days.")
    if end > today:
        return _fallback(default, "The end date is in the future; showing the last 30 days.")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        return _fallback(default, f"At most {MAX_RANGE_DAYS} days at once; showing the last 30 days.")
    return DateRange(since=start, until=end)


def _fallback(default: DateRange, note: str) -> DateRange:
    return DateRange(since=default.since, until=default.until, notes=[note])


# =============================================================================================
# Links to the changelists
# =============================================================================================


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def admin_list_url(model, **params) -> str:
    """The admin changelist of ``model`` filtered by ``params`` (Django lookups as in the URL)."""
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


# =============================================================================================
# Expressions
# =============================================================================================


def _currency():
    """Chargily rows are paid in DZD; Stripe rows in the plan's currency."""
    return Case(
        When(gateway=Gateway.CHARGILY, then=Value("dzd")),
        default=F("plan__currency"),
        output_field=CharField(),
    )


def _monthly_minor():
    """The plan's price per month in minor units of ``_currency()`` (a yearly price / 12)."""
    price = Case(
        When(gateway=Gateway.CHARGILY, then=Coalesce("plan__price_dzd_minor", 0)),
        default=F("plan__price_minor"),
    )
    price = Cast(price, _MONEY)
    return Case(
        When(plan__interval=Plan.Interval.YEAR, then=price / Value(Decimal(12))),
        default=price,
        output_field=_MONEY,
    )


def _live_at(moment: datetime) -> Q:
    return Q(activated_at__lte=moment) & (
        Q(ended_at__gt=moment) | Q(ended_at__isnull=True, status__in=ENTITLED)
    )


def _churned_in(start: datetime, end: datetime) -> Q:
    """Ended in [start, end) while live at ``start``, and not replaced by a newer subscription
    of the same customer (``billing.subscriptions.subscription_retire`` sets ``replaced_by``)."""
    return Q(ended_at__gte=start, ended_at__lt=end, activated_at__lte=start, replaced_by__isnull=True)


def _mrr(amounts: dict[str, Decimal]) -> dict:
    minor = {currency: int(rounded(value, Decimal(1))) for currency, value in amounts.items() if value}
    return {"by_currency_minor": dict(sorted(minor.items())), "usd": usd_from_minor(amounts=minor)}


# =============================================================================================
# Now: MRR, live subscriptions by plan, trials
# =============================================================================================


def subscriptions_live_get() -> dict:
    """Live subscriptions now, by plan: paid (active, past due) and trialing, and the MRR of the
    paid ones per currency and in USD (``EXCHANGE_RATES_TO_USD``). One query."""
    rows = (
        Subscription.objects.filter(status__in=ENTITLED, activated_at__isnull=False)
        .annotate(currency=_currency(), monthly=_monthly_minor())
        .values("plan_id", "plan__code", "plan__name", "currency")
        .annotate(
            paid=Count("pk", filter=Q(status__in=PAID)),
            trials=Count("pk", filter=Q(status=Subscription.Status.TRIALING)),
            mrr=Coalesce(Sum("monthly", filter=Q(status__in=PAID)), Decimal(0), output_field=_MONEY),
        )
        .order_by("plan__code", "currency")
    )
    plans: dict[int, dict] = {}
    mrr: dict[str, Decimal] = {}
    for row in rows:
        plan = plans.setdefault(
            row["plan_id"],
            {"plan": row["plan__code"], "name": row["plan__name"], "paid": 0, "trials": 0, "mrr": {}},
        )
        plan["paid"] += row["paid"]
        plan["trials"] += row["trials"]
        plan["mrr"][row["currency"]] = plan["mrr"].get(row["currency"], Decimal(0)) + row["mrr"]
        mrr[row["currency"]] = mrr.get(row["currency"], Decimal(0)) + row["mrr"]
    by_plan = []
    for plan_id, plan in plans.items():
        by_plan.append(
            {
                **plan,
                "mrr": _mrr(plan["mrr"]),
                "paid_url": admin_list_url(Subscription, plan__id__exact=plan_id, status__in=",".join(PAID)),
                "trials_url": admin_list_url(
                    Subscription, plan__id__exact=plan_id, status__exact=Subscription.Status.TRIALING
                ),
            }
        )
    return {
        "mrr": _mrr(mrr),
        "mrr_url": admin_list_url(Subscription, status__in=",".join(PAID)),
        "paid": sum(plan["paid"] for plan in by_plan),
        "paid_url": admin_list_url(Subscription, status__in=",".join(PAID)),
        "trials": sum(plan["trials"] for plan in by_plan),
        "trials_url": admin_list_url(Subscription, status__exact=Subscription.Status.TRIALING),
        "by_plan": by_plan,
    }


# =============================================================================================
# The 12-week trend
# =============================================================================================


def weeks_list(*, now: datetime, count: int = TREND_WEEKS) -> list[tuple[date, datetime, datetime]]:
    """The last ``count`` ISO weeks, oldest first, as (Monday, start, end); the current week
    ends ``now``. Weeks are UTC, like every other day boundary of the dashboards."""
    tz = UTC
    monday = now.date() - timedelta(days=now.date().weekday())
    weeks = []
    for back in range(count - 1, -1, -1):
        day = monday - timedelta(weeks=back)
        start = datetime.combine(day, time.min, tzinfo=tz)
        weeks.append((day, start, min(start + timedelta(weeks=1), now)))
    return weeks


def subscriptions_weekly_get(*, weeks) -> list[dict]:
    """Per week: MRR, paid and trialing subscriptions at its end, live ones at its start and
    those that churned in it. One aggregate query over the rows live at some time in the window."""
    first, last = weeks[0][1], weeks[-1][2]
    aggregates = {}
    for i, (_, start, end) in enumerate(weeks):
        at_end = _live_at(end)
        aggregates |= {
            f"mrr_{i}": Sum("monthly", filter=at_end & ~Q(status=Subscription.Status.TRIALING)),
            f"paid_{i}": Count("pk", filter=at_end & ~Q(status=Subscription.Status.TRIALING)),
            f"trials_{i}": Count("pk", filter=at_end & Q(status=Subscription.Status.TRIALING)),
            f"start_{i}": Count("pk", filter=_live_at(start)),
            f"churned_{i}": Count("pk", filter=_churned_in(start, end)),
        }
    rows = list(
        Subscription.objects.filter(activated_at__lt=last)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=first))
        .annotate(currency=_currency(), monthly=_monthly_minor())
        .values("currency")
        .annotate(**aggregates)
        .order_by("currency")
    )
    points = []
    for i, (monday, start, end) in enumerate(weeks):
        live_start = sum(row[f"start_{i}"] for row in rows)
        churned = sum(row[f"churned_{i}"] for row in rows)
        points.append(
            {
                "week": monday,
                "mrr": _mrr({row["currency"]: row[f"mrr_{i}"] or Decimal(0) for row in rows}),
                "paid": sum(row[f"paid_{i}"] for row in rows),
                "trials": sum(row[f"trials_{i}"] for row in rows),
                "live_at_start": live_start,
                "churned": churned,
                "churn_percent": percent_of(churned, live_start),
                "churned_url": admin_list_url(
                    Subscription,
                    ended_at__gte=_iso(start),
                    ended_at__lt=_iso(end),
                    activated_at__lte=_iso(start),
                    replaced_by__isnull="True",
                ),
            }
        )
    return points


def payments_failed_weekly_get(*, weeks) -> list[dict]:
    """Per week: failed payment attempts (our transactions, either gateway, by ``completed_at``
    on the ``paymenttx_status_completed`` index) and Stripe ``invoice.payment_failed`` events
    (each failed renewal attempt; on the ``type`` and ``received_at`` indexes). Two queries."""
    first, last = weeks[0][1], weeks[-1][2]
    tx = PaymentTransaction.objects.filter(
        status=PaymentTransaction.Status.FAILED, completed_at__gte=first, completed_at__lt=last
    ).aggregate(
        **{
            f"w{i}": Count("pk", filter=Q(completed_at__gte=start, completed_at__lt=end))
            for i, (_, start, end) in enumerate(weeks)
        }
    )
    invoices = StripeEvent.objects.filter(
        type=INVOICE_FAILED, received_at__gte=first, received_at__lt=last
    ).aggregate(
        **{
            f"w{i}": Count("pk", filter=Q(received_at__gte=start, received_at__lt=end))
            for i, (_, start, end) in enumerate(weeks)
        }
    )
    return [
        {
            "week": monday,
            "transactions": tx[f"w{i}"],
            "invoices": invoices[f"w{i}"],
            "total": tx[f"w{i}"] + invoices[f"w{i}"],
            "transactions_url": payments_failed_url(start=start, end=end),
            "invoices_url": admin_list_url(
                StripeEvent,
                type__exact=INVOICE_FAILED,
                received_at__gte=_iso(start),
                received_at__lt=_iso(end),
            ),
        }
        for i, (monday, start, end) in enumerate(weeks)
    ]


def payments_failed_url(*, start: datetime, end: datetime) -> str:
    return admin_list_url(
        PaymentTransaction,
        status__exact=PaymentTransaction.Status.FAILED,
        completed_at__gte=_iso(start),
        completed_at__lt=_iso(end),
    )


# =============================================================================================
# Composition
# =============================================================================================


def business_overview_get(*, now: datetime | None = None) -> dict:
    """The business block: now (MRR, paid and trialing subscriptions by plan) and the 12-week
    trend of MRR, subscriptions, trials, churn and failed payments. Four queries."""
    now = now or timezone.now()
    weeks = weeks_list(now=now)
    subscriptions = subscriptions_weekly_get(weeks=weeks)
    failed = payments_failed_weekly_get(weeks=weeks)
    trend = [{**sub, "failed_payments": fail} for sub, fail in zip(subscriptions, failed, strict=True)]
    this_week = trend[-1]
    return {
        **subscriptions_live_get(),
        "churn_this_week": {
            "churned": this_week["churned"],
            "percent": this_week["churn_percent"],
            "url": this_week["churned_url"],
        },
        "failed_this_week": this_week["failed_payments"],
        "trend": trend,
    }


def economics_drilldown_get(*, economics, since: date, until: date) -> dict:
    """The economics tables' rows over [since, until], each with the changelist behind it: a
    plan's subscriptions (the credit-pack row: the range's paid pack payments), a provider's
    daily rollups (``url``) and the calls behind its credits charged (``events_url``; None for
    the "none" row, calls without a provider, which the log's filter cannot select); and the
    range's paid payments behind the revenue. One query (plan codes to ids: the admin filters
    plans by id)."""
    tz = UTC
    start = datetime.combine(since, time.min, tzinfo=tz)
    end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=tz)
    paid = {
        "status__exact": PaymentTransaction.Status.PAID,
        "completed_at__gte": _iso(start),
        "completed_at__lt": _iso(end),
    }
    codes = [row["plan"] for row in economics.by_plan]
    ids = dict(Plan.objects.filter(code__in=codes).values_list("code", "pk"))
    credits = admin_list_url(PaymentTransaction, kind__exact=PaymentTransaction.Kind.CREDIT_PACK, **paid)
    return {
        "revenue_url": admin_list_url(PaymentTransaction, **paid),
        "by_plan": [
            {
                **row,
                "url": admin_list_url(Subscription, plan__id__exact=ids[row["plan"]])
                if row["plan"] in ids
                else credits,
            }
            for row in economics.by_plan
        ],
        "by_provider": [
            {
                **row,
                "url": admin_list_url(
                    UsageDailyRollup,
                    provider=row["provider"],
                    day__gte=since.isoformat(),
                    day__lte=until.isoformat(),
                ),
                "events_url": admin_list_url(
                    UsageEvent,
                    provider=row["provider"],
                    created_at__gte=_iso(start),
                    created_at__lt=_iso(end),
                )
                if row["provider"] != "none"
                else None,
            }
            for row in economics.by_provider
        ],
    }
