import pytest
from django.db import IntegrityError, transaction

from credits.models import CreditAccount, CreditPack, EndpointCost, LedgerEntry


@pytest.mark.parametrize(
    ("per_call", "per_1000", "units", "expected"),
    [
        (5, 0, 0, 5),
        (5, 0, 999, 5),
        (0, 2, 1, 1),
        (0, 2, 500, 1),
        (0, 2, 501, 2),
        (1, 3, 1000, 4),
        (0, 2, -5, 0),
    ],
)
def test_cost_is_per_call_plus_per_thousand_units_rounded_up(per_call, per_1000, units, expected):
    assert EndpointCost(per_call=per_call, per_1000_units=per_1000).cost_for(units) == expected


@pytest.mark.django_db
def test_ledger_entries_cannot_be_edited_or_deleted(workspace, fund):
    entry = fund(workspace, 10)

    entry.amount = 1000
    with pytest.raises(ValueError, match="append-only"):
        entry.save()
    with pytest.raises(ValueError, match="append-only"):
        entry.delete()
    assert LedgerEntry.objects.get(pk=entry.pk).amount == 10


@pytest.mark.django_db
@pytest.mark.parametrize("change", [{"balance": -1}, {"held": -1}, {"held": 11}])
def test_database_refuses_negative_balance_and_over_hold(workspace, fund, change):
    fund(workspace, 10)

    with pytest.raises(IntegrityError), transaction.atomic():
        CreditAccount.objects.filter(workspace=workspace).update(**change)


@pytest.mark.django_db
def test_ledger_sign_must_match_kind(workspace):
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            workspace=workspace, kind="consume", amount=5, balance_after=5, idempotency_key="x"
        )


@pytest.mark.django_db
def test_seed_migration_installs_the_catalogue():
    packs = {p.code: (p.credits, p.price_minor, p.currency) for p in CreditPack.objects.all()}
    assert packs["pack_100"] == (100, 1900, "eur")
    assert packs["pack_500"] == (500, 7900, "eur")
    assert packs["pack_1000"] == (1000, 13900, "eur")
    costs = dict(EndpointCost.objects.values_list("endpoint", "per_call"))
    assert costs["/api/ai/generate"] == 5 and costs["/api/ar/convert-2d-to-3d"] == 15
