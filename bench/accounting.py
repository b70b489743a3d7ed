"""The accounting check run after every bench run: the database must add up exactly.

Invariants, for the bench workspace (whose calls all use the operator's global key):

- successful calls seen by the client = successful usage events (a run cut off by the load
  generator may leave up to ``connections`` calls that finished server-side after the client
  stopped counting, so the client gives a range);
- the same endpoint by endpoint for the routes given in ``endpoints`` (embeddings, Responses,
  Messages: their events carry their own endpoint), and each of those events billed exactly the
  tokens the fake upstream reported for one call of the route (its body is fixed);
- quota ``used`` of each meter = the sum the events account for (tokens for ``llm_tokens``, one
  per successful call for ``requests``), summed over every period row;
- no reservation left open (no ``held`` row, no counter with ``reserved > 0``);
- daily rollups = the raw events they summarise;
- no overspend: each day's operator spend <= ``DAILY_BUDGET_USD`` and = the events' cost.

Needs Django set up against the bench database (the bench and the smoke test both do).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import TruncDate

from billing.models import QuotaReservation, UsageCounter
from proxy.models import DailySpend, UsageDailyRollup, UsageEvent

# Key sources whose calls are paid by the operator (count toward quota and daily spend).
OPERATOR_SOURCES = ("global", "env")
# The workspace's own provider key (and, in calls logged before workspaces, the user's): its
# tokens are off the quota.
BYOK_SOURCES = (UsageEvent.KeySource.WORKSPACE, UsageEvent.KeySource.PERSONAL)


@dataclass
class AccountingReport:
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    def fail(self, message: str) -> None:
        self.ok = False
        self.problems.append(message)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "problems": self.problems, "figures": self.figures}


def _open_reservations(workspace_id: int) -> tuple[int, int]:
    held = QuotaReservation.objects.filter(
        workspace_id=workspace_id, status=QuotaReservation.Status.HELD
    ).count()
    reserved = UsageCounter.objects.filter(workspace_id=workspace_id).aggregate(r=Sum("reserved"))["r"] or 0
    return held, reserved


def accounting_settle_wait(*, workspace_id: int, timeout_s: float = 30.0) -> float:
    """Wait until in-flight calls have settled (no open reservation, event count stable).

    Settles and usage events may be written off the request path, so a check right after the
    load stops could see a transient state. A reservation that stays open while nothing moves
    is leaked, not late: the wait ends and the check reports it. Returns the seconds waited.
    """
    began = time.monotonic()
    stable = 0
    last = None
    while time.monotonic() - began < timeout_s:
        held, reserved = _open_reservations(workspace_id)
        state = (held, reserved, UsageEvent.objects.filter(workspace_id=workspace_id).count())
        stable = stable + 1 if state == last else 0
        # Settled: nothing open and nothing moving; or stuck: open but unchanged for 3 s.
        if (stable >= 3 and not held and not reserved) or stable >= 12:
            break
        last = state
        time.sleep(0.25)
    return time.monotonic() - began


def accounting_check(
    *,
    workspace_id: int,
    client_ok_min: int | None = None,
    client_ok_max: int | None = None,
    endpoints: dict[str, dict] | None = None,
    wait: bool = True,
    timeout_s: float = 30.0,
) -> AccountingReport:
    """Check every invariant above. ``client_ok_min/max``: successful calls the clients saw, on
    every endpoint; ``endpoints``: ``{path: {"ok_min", "ok_max", "usage"}}``, the same for one
    endpoint, with ``usage`` the fake upstream's usage block for one call (or None)."""
    report = AccountingReport()
    if wait:
        report.figures["settle_wait_s"] = round(
            accounting_settle_wait(workspace_id=workspace_id, timeout_s=timeout_s), 2
        )

    events = UsageEvent.objects.filter(workspace_id=workspace_id)
    success = Q(status_code__gte=200, status_code__lt=300)
    totals = events.aggregate(
        events=Count("id"),
        ok=Count("id", filter=success),
        tokens=Sum("total_tokens", filter=success & ~Q(key_source__in=BYOK_SOURCES)),
        estimated=Count("id", filter=Q(is_estimated=True)),
        zero_usage_ok=Count("id", filter=success & Q(total_tokens=0, emails=0)),
        cost=Sum("cost_usd"),
    )
    tokens = totals["tokens"] or 0
    report.figures.update(
        events=totals["events"],
        ok_events=totals["ok"],
        tokens=tokens,
        estimated_events=totals["estimated"],
    )

    if client_ok_min is not None and totals["ok"] < client_ok_min:
        report.fail(f"{client_ok_min} successful calls seen by clients but only {totals['ok']} usage events")
    if client_ok_max is not None and totals["ok"] > client_ok_max:
        report.fail(f"{totals['ok']} successful usage events but clients saw at most {client_ok_max}")
    for path, expected in (endpoints or {}).items():
        _endpoint_check(report, events.filter(success, endpoint=path), path=path, **expected)
    if totals["zero_usage_ok"]:
        report.fail(f"{totals['zero_usage_ok']} successful calls recorded with zero usage")

    # Quota counters, summed over every period (a run may cross midnight UTC).
    counters = {
        row["meter"]: row
        for row in UsageCounter.objects.filter(workspace_id=workspace_id)
        .values("meter")
        .annotate(used=Sum("used"), reserved=Sum("reserved"))
    }
    llm = counters.get("llm_tokens")
    report.figures["quota_llm_tokens_used"] = llm["used"] if llm else 0
    if (llm["used"] if llm else 0) != tokens:
        report.fail(
            f"quota llm_tokens used = {llm['used'] if llm else 0} but the events sum to {tokens} tokens"
        )
    requests_counter = counters.get("requests")
    if requests_counter is not None:
        report.figures["quota_requests_used"] = requests_counter["used"]
        if requests_counter["used"] != totals["ok"]:
            report.fail(
                f"quota requests used = {requests_counter['used']} but {totals['ok']} calls succeeded"
            )

    held, reserved = _open_reservations(workspace_id)
    report.figures.update(open_reservations=held, reserved_units=reserved)
    if held or reserved:
        report.fail(f"{held} reservations still held ({reserved} units reserved) after the run settled")

    # Rollups per UTC day against the events of that day (a call is dated when it was admitted,
    # in every ledger, so a run across midnight must still agree day by day).
    rollups_by_day = {
        row["day"]: (row["requests"], row["tokens"], row["cost"])
        for row in UsageDailyRollup.objects.filter(workspace_id=workspace_id)
        .values("day")
        .annotate(requests=Sum("requests"), tokens=Sum("tokens"), cost=Sum("cost_usd"))
    }
    events_by_day = {
        row["day"]: (row["requests"], row["tokens"] or 0, row["cost"] or Decimal(0))
        for row in events.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(requests=Count("id"), tokens=Sum("total_tokens"), cost=Sum("cost_usd"))
    }
    report.figures["rollup_requests"] = sum(requests for requests, _t, _c in rollups_by_day.values())
    for day in sorted(rollups_by_day.keys() | events_by_day.keys()):
        rolled = rollups_by_day.get(day, (0, 0, Decimal(0)))
        logged = events_by_day.get(day, (0, 0, Decimal(0)))
        if rolled != logged:
            report.fail(
                f"rollups on {day} count {rolled[0]} calls, {rolled[1]} tokens, {rolled[2]} USD "
                f"but that day's events are {logged[0]} calls, {logged[1]} tokens, {logged[2]} USD"
            )

    # Operator spend per UTC day (every workspace: the cap is global).
    cap = Decimal(settings.DAILY_BUDGET_USD)
    spend_by_day = {
        row["day"]: row["cost"] or Decimal(0)
        for row in UsageEvent.objects.filter(key_source__in=OPERATOR_SOURCES)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(cost=Sum("cost_usd"))
    }
    report.figures["daily_budget_usd"] = str(cap)
    for day, spent in DailySpend.objects.values_list("day", "spent_usd"):
        if spent > cap:
            report.fail(f"operator spend on {day} is {spent} USD, over the {cap} USD cap")
        expected = spend_by_day.get(day, Decimal(0))
        if spent != expected:
            report.fail(f"daily spend on {day} records {spent} USD but the events cost {expected} USD")
        report.figures[f"spend_{day}"] = str(spent)
    return report


def _endpoint_check(
    report: AccountingReport, ok_events, *, path: str, ok_min: int, ok_max: int, usage
) -> None:
    """One endpoint's successful events against its clients' count and the upstream's usage."""
    found = ok_events.aggregate(
        ok=Count("id"),
        tokens=Sum("total_tokens"),
        prompt=Sum("prompt_tokens"),
        completion=Sum("completion_tokens"),
        low=Min("total_tokens"),
        high=Max("total_tokens"),
    )
    count, tokens = found["ok"], found["tokens"] or 0
    figures = {"ok_events": count, "tokens": tokens, "client_ok_min": ok_min, "client_ok_max": ok_max}
    report.figures.setdefault("endpoints", {})[path] = figures
    if count < ok_min:
        report.fail(f"{ok_min} successful {path} calls seen by clients but only {count} usage events")
    if count > ok_max:
        report.fail(f"{count} successful {path} usage events but clients saw at most {ok_max}")
    if usage is None or not count:
        return
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    figures["tokens_per_call"] = prompt + completion
    expected = (count * prompt, count * completion)
    if (found["prompt"], found["completion"]) != expected or found["low"] != found["high"]:
        report.fail(
            f"{path}: {count} calls billed {found['prompt']} prompt + {found['completion']} completion "
            f"tokens ({found['low']}–{found['high']} a call) but the upstream reported {prompt} + "
            f"{completion} for each, {expected[0]} + {expected[1]} in all"
        )
