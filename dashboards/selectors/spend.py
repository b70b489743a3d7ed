"""The spend overview: what a workspace's calls were charged, per day (or hour), model and key.

Reads only ``proxy.UsageSpendHourly`` (one row per workspace, UTC hour, key, requested model and
charge currency), never the raw ``UsageEvent`` log, so a year costs what a day costs. Hourly rows
let the last 24 hours be exact and let days be cut in the viewer's time zone: an hour belongs to
the local day its first instant falls on (in a zone whose offset is not whole hours, the
day's edge moves to the nearest hour boundary after local midnight).

Who sees what follows the Activity page: a member whose role has ``keys.manage_any`` sees the
whole workspace, another member only the keys they created.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal

from django.db.models import F, Sum
from django.db.models.functions import TruncDate

from accounts.selectors import api_key_list
from core.exceptions import ApiError
from proxy.models import UsageSpendHourly

RANGES = {"24h": 1, "7d": 7, "30d": 30}  # range -> days
DEFAULT_RANGE = "30d"
CUSTOM = "custom"
MAX_DAYS = 366
MICROS = 1_000_000
EARLIEST, LATEST = date(2000, 1, 1), date(9998, 12, 31)  # local midnights stay representable in UTC


@dataclass(frozen=True)
class SpendPeriod:
    range: str  # "24h", "7d", "30d" or "custom"
    start: datetime  # first instant counted (aware)
    end: datetime  # first instant not counted
    since: date  # first day shown, in ``zone``
    until: date  # last day shown, in ``zone``
    zone: tzinfo
    hourly: bool  # one bucket per hour (24h) rather than per local day


def _local_midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


def _parse_day(value: str, param: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError("invalid_request", f"{param} must be a date (YYYY-MM-DD).", param=param) from None


def spend_period_get(
    *,
    now: datetime,
    zone: tzinfo,
    range_key: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
) -> SpendPeriod:
    """The period a request asks for: ``range_key`` (24h, 7d, 30d; 30d when nothing is asked),
    or ``date_from``/``date_to`` (both, YYYY-MM-DD, inclusive days in ``zone``, at most
    ``MAX_DAYS``). Anything else raises ``invalid_request`` naming the parameter."""
    if date_from or date_to:
        if range_key and range_key != CUSTOM:
            raise ApiError("invalid_request", "Give either range or from/to, not both.", param="range")
        if not (date_from and date_to):
            missing = "to" if date_from else "from"
            raise ApiError("invalid_request", "A custom range needs both from and to.", param=missing)
        since, until = _parse_day(date_from, "from"), _parse_day(date_to, "to")
        if until < since:
            raise ApiError("invalid_request", "to must be on or after from.", param="to")
        if (until - since).days + 1 > MAX_DAYS:
            raise ApiError("invalid_request", f"A custom range spans at most {MAX_DAYS} days.", param="to")
        if since < EARLIEST or until > LATEST:
            param = "from" if since < EARLIEST else "to"
            raise ApiError("invalid_request", f"Dates run from {EARLIEST} to {LATEST}.", param=param)
        return SpendPeriod(
            range=CUSTOM,
            start=_local_midnight(since, zone),
            end=_local_midnight(until + timedelta(days=1), zone),
            since=since,
            until=until,
            zone=zone,
            hourly=False,
        )
    range_key = range_key or DEFAULT_RANGE
    if range_key not in RANGES:
        raise ApiError("invalid_request", f"range must be one of {', '.join(RANGES)}.", param="range")
    if range_key == "24h":
        end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        start = end - timedelta(hours=24)
        return SpendPeriod(
            range=range_key,
            start=start,
            end=end,
            since=start.astimezone(zone).date(),
            until=now.astimezone(zone).date(),
            zone=zone,
            hourly=True,
        )
    until = now.astimezone(zone).date()
    since = until - timedelta(days=RANGES[range_key] - 1)
    return SpendPeriod(
        range=range_key,
        start=_local_midnight(since, zone),
        end=_local_midnight(until + timedelta(days=1), zone),
        since=since,
        until=until,
        zone=zone,
        hourly=False,
    )


@dataclass(frozen=True)
class Money:
    currency: str  # ISO 4217, lower case
    micros: int  # millionths of the major unit

    @property
    def amount(self) -> Decimal:
        return Decimal(self.micros) / MICROS

    @property
    def display(self) -> str:
        """``0.075 EUR``: two decimals at least, to the micro at most (as ``UsageEvent.charge_display``)."""
        value = self.amount.normalize()
        places = max(2, -value.as_tuple().exponent)
        return f"{value:,.{places}f} {self.currency.upper()}"


@dataclass
class SpendTotals:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    charge_credits: int = 0
    micros: dict[str, int] = field(default_factory=dict)  # currency -> millionths

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def money(self) -> list[Money]:
        """The charge per currency, currencies in order; calls without a money charge left out."""
        return [Money(currency=c, micros=m) for c, m in sorted(self.micros.items()) if c]

    def add(self, row: dict) -> None:
        self.requests += row["requests"] or 0
        self.errors += row["errors"] or 0
        self.prompt_tokens += row["prompt_tokens"] or 0
        self.completion_tokens += row["completion_tokens"] or 0
        self.charge_credits += row["charge_credits"] or 0
        if row["charge_currency"]:
            currency = row["charge_currency"]
            self.micros[currency] = self.micros.get(currency, 0) + (row["charge_micros"] or 0)


@dataclass
class SpendBucket(SpendTotals):
    start: datetime | None = None  # the hour's or the local day's first instant, in the period's zone


@dataclass
class SpendModel(SpendTotals):
    model: str = ""  # the requested model, or the endpoint of a call without one (emails)


@dataclass
class SpendKey(SpendTotals):
    key_id: int | None = None  # None: calls made without a key
    name: str = ""
    prefix: str = ""


@dataclass(frozen=True)
class SpendSummary:
    period: SpendPeriod
    totals: SpendTotals
    buckets: list[SpendBucket]  # every hour or day of the period (zeros included), oldest first
    by_model: list[SpendModel]  # most credits first
    by_key: list[SpendKey]  # most credits first


def _bucket_starts(period: SpendPeriod) -> list[datetime]:
    if period.hourly:
        return [(period.start + timedelta(hours=i)).astimezone(period.zone) for i in range(24)]
    days = (period.until - period.since).days + 1
    return [_local_midnight(period.since + timedelta(days=i), period.zone) for i in range(days)]


def _order(rows) -> list:
    return sorted(rows, key=lambda r: (-r.charge_credits, -sum(r.micros.values()), -r.requests))


def spend_summary_get(*, workspace, period: SpendPeriod, created_by=None) -> SpendSummary:
    """The workspace's spend over ``period`` per bucket, model and key, and in all (with
    ``created_by``: only the keys that member created). Two queries: the rollup, grouped once,
    and the names of the keys it mentions."""
    rows = UsageSpendHourly.objects.filter(workspace=workspace, hour__gte=period.start, hour__lt=period.end)
    if created_by is not None:
        own = api_key_list(workspace=workspace, created_by=created_by).values("pk")
        rows = rows.filter(api_key_id__in=own)
    bucket = F("hour") if period.hourly else TruncDate("hour", tzinfo=period.zone)
    grouped = (
        rows.annotate(bucket=bucket)
        .values("bucket", "model", "api_key_id", "charge_currency")
        .annotate(
            requests=Sum("requests"),
            errors=Sum("errors"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            charge_credits=Sum("charge_credits"),
            charge_micros=Sum("charge_micros"),
        )
        .order_by()
    )
    starts = _bucket_starts(period)
    buckets = {
        (start.astimezone(UTC) if period.hourly else start.date()): SpendBucket(start=start)
        for start in starts
    }
    totals = SpendTotals()
    models: dict[str, SpendModel] = {}
    keys: dict[int, SpendKey] = defaultdict(SpendKey)
    for row in grouped:
        totals.add(row)
        key = row["bucket"].astimezone(UTC) if period.hourly else row["bucket"]
        if key in buckets:  # always, but a clock step cannot make a row vanish from the totals
            buckets[key].add(row)
        models.setdefault(row["model"], SpendModel(model=row["model"])).add(row)
        keys[row["api_key_id"]].add(row)
    named = (
        {
            pk: (name, prefix)
            for pk, name, prefix in api_key_list(workspace=workspace)
            .filter(pk__in=[pk for pk in keys if pk])
            .order_by()
            .values_list("pk", "name", "prefix")
        }
        if any(keys)
        else {}
    )
    for pk, row in keys.items():
        row.key_id = pk or None
        row.name, row.prefix = named.get(pk, ("Deleted key", "")) if pk else ("No key", "")
    return SpendSummary(
        period=period,
        totals=totals,
        buckets=list(buckets.values()),
        by_model=_order(models.values()),
        by_key=_order(keys.values()),
    )
