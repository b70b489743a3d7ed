"""Real threads against PostgreSQL: row locks and conditional UPDATEs, no mocks."""

import threading

import pytest
from django.core import mail
from django.db import connection
from django.test import Client

import billing.tests.stripe_events as se
from accounts.models import ApiKey
from billing.models import CheckoutFulfilment, QuotaReservation, StripeEvent, Subscription, UsageCounter
from billing.services import QuotaExceeded, quota_reserve, quota_settle

from .factories import UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _run_threads(count: int, target) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def worker(index):
        try:
            barrier.wait()
            results[index] = target(index)
        except Exception as exc:  # reported through results, asserted by the test
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_ten_concurrent_deliveries_of_one_session_activate_once(webhook_settings):
    user = UserFactory()
    workspace = user.personal_workspace
    session = se.checkout_session(workspace=workspace)
    same = se.event("checkout.session.completed", session)
    # half the deliveries are the same event, half are distinct events for the same session
    events = [same] * 5 + [
        se.event(
            "checkout.session.async_payment_succeeded" if i % 2 else "checkout.session.completed", session
        )
        for i in range(5)
    ]
    signed = [se.signed(evt) for evt in events]

    def deliver(index):
        payload, signature = signed[index]
        return (
            Client()
            .post(
                "/api/billing/webhook",
                data=payload,
                content_type="application/json",
                HTTP_STRIPE_SIGNATURE=signature,
            )
            .status_code
        )

    results = _run_threads(10, deliver)

    assert results == [200] * 10
    assert Subscription.objects.filter(workspace=workspace).count() == 1
    assert ApiKey.objects.filter(workspace=workspace).count() == 1
    assert CheckoutFulfilment.objects.get().status == CheckoutFulfilment.Status.FULFILLED
    assert StripeEvent.objects.count() == 6
    assert len([m for m in mail.outbox if m.to == [user.email]]) == 1


def test_fifty_threads_race_for_the_last_units(midday):
    workspace = UserFactory().personal_workspace  # free: 100 000 tokens / month
    quota_settle(
        reservation=quota_reserve(workspace=workspace, meter="llm_tokens", amount=99_990), actual=99_990
    )

    def take(_):
        try:
            reservation = quota_reserve(workspace=workspace, meter="llm_tokens", amount=1)
        except QuotaExceeded:
            return "refused"
        quota_settle(reservation=reservation, actual=1)
        return "ok"

    results = _run_threads(50, take)

    assert results.count("ok") == 10
    assert results.count("refused") == 40
    counter = UsageCounter.objects.get(workspace=workspace, meter="llm_tokens")
    assert (counter.used, counter.reserved) == (100_000, 0)
    assert QuotaReservation.objects.filter(status=QuotaReservation.Status.SETTLED).count() == 11


def test_fifty_threads_creating_the_period_counter_share_one_row(midday):
    workspace = UserFactory().personal_workspace
    results = _run_threads(
        50, lambda _: quota_reserve(workspace=workspace, meter="llm_tokens", amount=2_000).amount
    )
    assert results == [2_000] * 50
    counter = UsageCounter.objects.get(workspace=workspace, meter="llm_tokens")
    assert counter.reserved == 100_000
