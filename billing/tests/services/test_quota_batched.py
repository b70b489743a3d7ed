"""Batched quota functions of the proxy's hot path: every meter of a call at once.

Free plan (seeded): llm_tokens 100 000 / month, requests 3 / day, emails 0.
"""

import threading

import pytest
from django.db import connection

from billing.models import QuotaReservation, UsageCounter
from billing.services import (
    QuotaExceeded,
    quota_release_many,
    quota_reserve_many,
    quota_settle_many,
)

from ..factories import UserFactory

# Each test reserves in "this month" (or day), then reads that period's counter.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("midday")]


def _counters(workspace):
    return {c.meter: (c.used, c.reserved) for c in UsageCounter.objects.filter(workspace=workspace)}


def test_reserve_many_holds_every_meter_then_settle_charges_actual():
    workspace = UserFactory().personal_workspace

    held = quota_reserve_many(workspace=workspace, meters={"requests": 1, "llm_tokens": 500})

    assert {r.meter: r.amount for r in held} == {"requests": 1, "llm_tokens": 500}
    assert _counters(workspace) == {"requests": (0, 1), "llm_tokens": (0, 500)}
    assert QuotaReservation.objects.filter(workspace=workspace, status="held").count() == 2

    after = quota_settle_many(reservations=held, actual={"requests": 1, "llm_tokens": 120})

    assert after == {"requests": (1, 0), "llm_tokens": (120, 0)}
    assert _counters(workspace) == after
    assert set(QuotaReservation.objects.filter(workspace=workspace).values_list("status", "actual")) == {
        ("settled", 1),
        ("settled", 120),
    }


def test_settle_charges_at_most_what_was_reserved_and_runs_once():
    workspace = UserFactory().personal_workspace
    held = quota_reserve_many(workspace=workspace, meters={"llm_tokens": 100})

    quota_settle_many(reservations=held, actual={"llm_tokens": 10_000})
    quota_settle_many(reservations=held, actual={"llm_tokens": 10_000})
    quota_release_many(reservations=held)

    assert _counters(workspace) == {"llm_tokens": (100, 0)}


def test_a_meter_over_its_limit_refuses_the_whole_call_and_holds_nothing():
    workspace = UserFactory().personal_workspace
    for _ in range(3):
        quota_settle_many(
            reservations=quota_reserve_many(workspace=workspace, meters={"requests": 1}),
            actual={"requests": 1},
        )

    with pytest.raises(QuotaExceeded) as refused:
        quota_reserve_many(workspace=workspace, meters={"llm_tokens": 10, "requests": 1})

    assert refused.value.meter == "requests"
    assert (refused.value.status.used, refused.value.status.limit) == (3, 3)
    assert _counters(workspace).get("llm_tokens", (0, 0)) == (0, 0)
    assert _counters(workspace)["requests"] == (3, 0)
    assert not QuotaReservation.objects.filter(workspace=workspace, status="held").exists()


def test_a_meter_not_in_the_plan_is_refused():
    workspace = UserFactory().personal_workspace
    with pytest.raises(QuotaExceeded) as refused:
        quota_reserve_many(workspace=workspace, meters={"emails": 1})
    assert refused.value.meter == "emails"


def test_release_many_gives_everything_back():
    workspace = UserFactory().personal_workspace
    held = quota_reserve_many(workspace=workspace, meters={"requests": 1, "llm_tokens": 700})

    quota_release_many(reservations=held)
    quota_release_many(reservations=held)

    assert _counters(workspace) == {"requests": (0, 0), "llm_tokens": (0, 0)}
    assert set(QuotaReservation.objects.filter(workspace=workspace).values_list("status", flat=True)) == {
        "released"
    }


@pytest.mark.postgres
def test_reserve_is_one_statement_once_the_counters_exist(django_assert_num_queries):
    workspace = UserFactory().personal_workspace
    quota_release_many(
        reservations=quota_reserve_many(workspace=workspace, meters={"requests": 1, "llm_tokens": 5})
    )

    with django_assert_num_queries(1):
        held = quota_reserve_many(
            workspace=workspace, meters={"requests": 1, "llm_tokens": 5}, synchronous_commit=False
        )
    with django_assert_num_queries(1):
        quota_settle_many(
            reservations=held, actual={"requests": 1, "llm_tokens": 5}, synchronous_commit=False
        )

    assert _counters(workspace) == {"requests": (1, 0), "llm_tokens": (5, 0)}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_forty_concurrent_reservations_never_pass_the_limit():
    """Quota for exactly 3 calls (requests 3/day): 40 threads race, exactly 3 succeed."""
    workspace = UserFactory().personal_workspace
    barrier = threading.Barrier(40)
    outcomes: list = []
    lock = threading.Lock()

    def worker():
        try:
            barrier.wait()
            held = quota_reserve_many(
                workspace=workspace, meters={"llm_tokens": 100, "requests": 1}, synchronous_commit=False
            )
            quota_settle_many(reservations=held, actual={"llm_tokens": 40, "requests": 1})
            result = "ok"
        except QuotaExceeded:
            result = "refused"
        finally:
            connection.close()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert outcomes.count("ok") == 3 and outcomes.count("refused") == 37
    assert _counters(workspace) == {"requests": (3, 0), "llm_tokens": (120, 0)}
    assert not QuotaReservation.objects.filter(workspace=workspace, status="held").exists()


@pytest.mark.postgres
def test_releasing_several_holds_of_one_counter_frees_their_sum():
    workspace = UserFactory().personal_workspace
    first = quota_reserve_many(workspace=workspace, meters={"llm_tokens": 30})
    second = quota_reserve_many(workspace=workspace, meters={"llm_tokens": 50})

    quota_release_many(reservations=first + second)

    assert _counters(workspace) == {"llm_tokens": (0, 0)}
