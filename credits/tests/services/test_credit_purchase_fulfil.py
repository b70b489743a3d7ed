import threading

import pytest
from django.db import connection

from accounts.models import AuditEvent
from billing.tests.stripe_events import checkout_row
from credits.models import CreditAccount, CreditPurchase, LedgerEntry
from credits.services import credit_purchase_fulfil
from credits.tests.factories import UserFactory, seed_catalogue


def paid_session(
    workspace, *, session_id="cs_test_1", pack="pack_500", credits="500", status="paid", amount=7900
):
    """The fields of a Stripe checkout.session our handler reads (as in Stripe's fixtures), for
    a checkout we started for ``workspace``: billing fulfils from our row, so the row is
    written too."""
    metadata = {"kind": "credit_pack", "pack": pack, "credits": credits, "workspace_id": str(workspace.pk)}
    checkout_row(
        workspace=workspace,
        session_id=session_id,
        kind="credit_pack",
        mode="payment",
        metadata=metadata,
        amount_minor=amount,
    )
    return {
        "id": session_id,
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": status,
        "payment_intent": f"pi_{session_id}",
        "amount_total": amount,
        "currency": "eur",
        "client_reference_id": str(workspace.pk),
        "metadata": dict(metadata),
    }


@pytest.mark.django_db
def test_paid_session_grants_the_pack_once_and_logs_revenue(catalogue, workspace, caplog):
    caplog.set_level("INFO", logger="tollgate.credits")

    entry = credit_purchase_fulfil(session=paid_session(workspace), event_id="evt_1")

    assert (entry.kind, entry.amount, entry.balance_after) == ("purchase", 500, 500)
    assert entry.idempotency_key == "checkout:cs_test_1"
    purchase = CreditPurchase.objects.get()
    assert (purchase.credits, purchase.amount_minor, purchase.currency) == (500, 7900, "eur")
    assert purchase.stripe_payment_intent_id == "pi_cs_test_1"
    account = CreditAccount.objects.get(workspace=workspace)
    assert account.balance == 500 and account.first_purchase_at is not None
    record = next(r for r in caplog.records if r.getMessage() == "credit purchase")
    assert (record.workspace_id, record.pack, record.revenue_minor) == (workspace.pk, "pack_500", 7900)
    assert purchase.workspace_id == workspace.pk


@pytest.mark.django_db
def test_duplicate_and_async_success_events_grant_once(catalogue, workspace):
    session = paid_session(workspace)

    credit_purchase_fulfil(session=session, event_id="evt_completed")
    credit_purchase_fulfil(session=session, event_id="evt_completed")
    credit_purchase_fulfil(session=session, event_id="evt_async_succeeded")

    assert CreditAccount.objects.get(workspace=workspace).balance == 500
    assert LedgerEntry.objects.filter(kind="purchase").count() == 1
    assert CreditPurchase.objects.count() == 1


@pytest.mark.django_db
def test_the_purchase_is_audited_once_without_an_actor(catalogue, workspace):
    """A webhook fulfils it: the audit event names the workspace and what was paid, no member."""
    session = paid_session(workspace)

    credit_purchase_fulfil(session=session, event_id="evt_completed")
    credit_purchase_fulfil(session=session, event_id="evt_async_succeeded")

    (event,) = AuditEvent.objects.filter(action="credits.purchased")
    purchase = CreditPurchase.objects.get()
    assert (event.workspace_id, event.actor_id, event.target) == (
        workspace.pk,
        None,
        f"credit_purchase:{purchase.pk}",
    )
    assert event.details == {
        "pack": "pack_500",
        "credits": 500,
        "amount_minor": 7900,
        "currency": "eur",
        "checkout_reference": "cs_test_1",
    }


@pytest.mark.django_db
def test_a_session_opened_before_workspaces_pays_into_the_users_personal_workspace(
    catalogue, user, workspace
):
    """Its metadata names ``user_id``; in tests the personal workspace's id differs from it."""
    session = paid_session(workspace)
    session["metadata"] = {
        "kind": "credit_pack",
        "pack": "pack_500",
        "credits": "500",
        "user_id": str(user.pk),
    }
    assert workspace.pk != user.pk

    credit_purchase_fulfil(session=session, event_id="evt_legacy")

    assert CreditAccount.objects.get(workspace=workspace).balance == 500


@pytest.mark.django_db
def test_unpaid_session_waits_for_async_payment(catalogue, workspace):
    assert credit_purchase_fulfil(session=paid_session(workspace, status="unpaid"), event_id="evt_1") is None
    assert not LedgerEntry.objects.exists()

    credit_purchase_fulfil(session=paid_session(workspace), event_id="evt_2")

    assert CreditAccount.objects.get(workspace=workspace).balance == 500


@pytest.mark.django_db
def test_credits_come_from_the_session_snapshot_not_the_current_pack(catalogue, workspace):
    """A pack edited between checkout and payment must not change what was paid for."""
    catalogue[1].credits = 600
    catalogue[1].save()

    credit_purchase_fulfil(session=paid_session(workspace, credits="500"), event_id="evt_1")

    assert CreditAccount.objects.get(workspace=workspace).balance == 500


@pytest.mark.django_db
@pytest.mark.parametrize(
    "metadata",
    [
        {"pack": "pack_500", "credits": "500", "workspace_id": "999999"},
        {"pack": "pack_500", "credits": "500", "user_id": "999999"},
        {"pack": "nope", "workspace_id": "1"},
        {},
    ],
)
def test_unresolvable_sessions_grant_nothing(catalogue, workspace, metadata):
    session = paid_session(workspace)
    session["metadata"] = metadata
    session["client_reference_id"] = None

    assert credit_purchase_fulfil(session=session, event_id="evt_1") is None
    assert not LedgerEntry.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_deliveries_grant_once():
    seed_catalogue()
    workspace = UserFactory().personal_workspace
    session = paid_session(workspace, session_id="cs_race")
    barrier = threading.Barrier(10)
    errors = []

    def worker(n):
        try:
            barrier.wait()
            credit_purchase_fulfil(session=session, event_id=f"evt_{n % 2}")
        except Exception as exc:  # any error here is a test failure, reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert CreditAccount.objects.get(workspace=workspace).balance == 500
    assert LedgerEntry.objects.filter(kind="purchase").count() == 1
    assert CreditPurchase.objects.count() == 1
