"""Concurrent Chargily deliveries: real threads against PostgreSQL, no mocks."""

import threading

import pytest
from django.core import mail
from django.db import connection
from django.test import Client

from accounts.models import ApiKey
from billing.models import (
    ChargilyEvent,
    CheckoutFulfilment,
    CheckoutSession,
    PaymentTransaction,
    Subscription,
)
from billing.services import plan_chargily_checkout_start

from . import chargily_events as ce
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


def test_concurrent_deliveries_of_one_payment_fulfil_once(chargily_settings):
    workspace = UserFactory().personal_workspace
    result = plan_chargily_checkout_start(
        workspace=workspace,
        plan_code="student",
        success_url="http://testserver/ok",
        failure_url="http://testserver/ko",
    )
    checkout = CheckoutSession.objects.get(checkout_reference=result["session_id"])
    same = ce.checkout_event("checkout.paid", checkout)
    # half the deliveries repeat one event, half are distinct events for the same checkout
    signed = [ce.signed(same)] * 5 + [
        ce.signed(ce.checkout_event("checkout.paid", checkout)) for _ in range(5)
    ]

    def deliver(index):
        payload, signature = signed[index]
        return ce.post(Client(), payload, signature).status_code

    statuses = _run_threads(10, deliver)
    assert statuses == [200] * 10
    assert Subscription.objects.filter(workspace=workspace).count() == 1
    assert CheckoutFulfilment.objects.get(checkout_reference=result["session_id"]).status == "fulfilled"
    assert PaymentTransaction.objects.get().status == "paid"
    assert ChargilyEvent.objects.count() == 6
    assert set(ChargilyEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert ApiKey.objects.filter(workspace=workspace).count() == 1
    assert len(mail.outbox) == 1
