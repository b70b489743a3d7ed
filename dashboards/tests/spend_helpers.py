"""Rows of the hourly spend rollup for the spend overview's tests (written directly: fixtures for
hand-computed expectations; the writers are proxy's, tested in proxy/tests/apis/test_spend_rollup.py)."""

from datetime import datetime

from proxy.models import UsageSpendHourly


def spend_row(
    workspace, hour: datetime, *, key=None, model="gpt-4o", currency="eur", requests=1, **totals
) -> UsageSpendHourly:
    return UsageSpendHourly.objects.create(
        workspace=workspace,
        hour=hour,
        api_key_id=key.pk if key is not None else 0,
        model=model,
        charge_currency=currency,
        requests=requests,
        **totals,
    )
