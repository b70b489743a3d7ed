"""Every proxied call writes these tables (quota-funded calls the first five, credit-funded
calls the credit ledger and holds); an index that only repeats the start of another one costs
a write per row (and disk) and answers no query the other cannot."""

import pytest
from django.db import connection

HOT_TABLES = [
    "proxy_usageevent",
    "proxy_usagedailyrollup",
    "proxy_dailyspend",
    "billing_quotareservation",
    "billing_usagecounter",
    "credits_ledgerentry",
    "credits_credithold",
]


def _indexes(table: str) -> dict[str, dict]:
    with connection.cursor() as cursor:
        return {
            name: info
            for name, info in connection.introspection.get_constraints(cursor, table).items()
            if info["index"] or info["unique"] or info["primary_key"]
        }


@pytest.mark.django_db
@pytest.mark.parametrize("table", HOT_TABLES)
def test_no_plain_index_on_a_hot_table_repeats_the_start_of_another(table):
    indexes = _indexes(table)
    redundant = [
        (name, other)
        for name, info in indexes.items()
        if not (info["unique"] or info["primary_key"])
        for other, other_info in indexes.items()
        if other != name
        and len(other_info["columns"]) > len(info["columns"])
        and other_info["columns"][: len(info["columns"])] == info["columns"]
    ]

    assert redundant == []
