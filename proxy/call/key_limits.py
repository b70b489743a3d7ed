"""An API key's own spend controls on the call path: its model allow-list and its request,
token, credit and money limits (``billing.services.key_limits``).

Both come with the key's cached identity, so a key without them costs nothing here: no query,
no round trip. A key with limits reserves on them (one statement, exact under concurrency)
before its quota and budget holds; the holds settle or release with the call's funding.
"""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from billing.services import KeyLimitExceeded, key_holds_release, key_limits_reserve
from core.exceptions import ApiError, retry_after_seconds
from core.money import format_minor
from core.time import isoformat_z

from ..dbcall import db_call


def model_not_allowed_error(model: str) -> ApiError:
    return ApiError(
        "model_not_allowed",
        f"This API key may not call the model '{model}'.",
        param="model",
    )


class KeyLimitError(ApiError):
    """An ``ApiError`` whose response carries no ``x-should-retry`` when the limit resets: the
    client waits ``Retry-After`` and may try again (``ApiError`` otherwise sends ``false`` for
    every code that is not retryable at once)."""

    def as_response(self):
        response = super().as_response()
        if "Retry-After" in self.headers:
            del response.headers["x-should-retry"]
        return response


def key_limit_error(status) -> ApiError:
    """429 ``key_limit_exceeded`` (or ``member_limit_exceeded``: the key's creator's monthly
    cap): ``Retry-After`` until a day or month window resets (and no ``x-should-retry``); a
    ``total`` limit never resets (no ``Retry-After``, ``x-should-retry: false``)."""
    if status.resets_at is None:
        headers = {"x-should-retry": "false"}
    else:
        wait = retry_after_seconds((status.resets_at - timezone.now()).total_seconds())
        headers = {"Retry-After": str(wait)}
    per = "in total" if status.window == "total" else f"per {status.window}"
    if status.unit == "money":
        amount = format_minor(status.limit, status.currency or "eur")
    else:
        amount = f"{status.limit} {status.unit}"
    member = status.scope == "member"
    return KeyLimitError(
        "member_limit_exceeded" if member else "key_limit_exceeded",
        f"The monthly spend cap of {amount} of this key's creator is reached (all their keys count)."
        if member
        else f"This API key's limit of {amount} {per} is reached.",
        headers=headers,
        limit=status.limit,
        used=status.used,
        resets_at=isoformat_z(status.resets_at) if status.resets_at is not None else None,
        unit=status.unit,
        window=status.window,
    )


def _reserve(
    *, api_key_id: int, key_limits, member_id, member_limits, meters: dict[str, int], currency: str, now
):
    try:
        return key_limits_reserve(
            api_key_id=api_key_id,
            limits=key_limits,
            membership_id=member_id,
            member_limits=member_limits,
            meters=meters,
            currency=currency,
            now=now,
            synchronous_commit=settings.PROXY_SYNCHRONOUS_COMMIT,
        )
    except KeyLimitExceeded as exc:
        raise key_limit_error(exc.status) from None


async def key_limits_areserve(
    *,
    api_key_id: int | None,
    key_limits,
    meters: dict[str, int],
    currency: str = "",
    now,
    member_id: int | None = None,
    member_limits=(),
) -> list:
    """The holds for one attempt on the key's limits and its creator's monthly caps ([] when
    there are none: no round trip), or 429. ``meters``: the call's quota meters and its maximum
    charge (``charge.charge_meters``); ``currency``: the plan's, in whose minor units money
    limits are set."""
    if api_key_id is None or not (key_limits or (member_limits and member_id is not None)):
        return []
    return await db_call(
        _reserve,
        api_key_id=api_key_id,
        key_limits=key_limits,
        member_id=member_id,
        member_limits=member_limits,
        meters=meters,
        currency=currency,
        now=now,
    )


async def key_holds_arelease(holds: list) -> None:
    if holds:
        await db_call(key_holds_release, holds=holds, synchronous_commit=settings.PROXY_SYNCHRONOUS_COMMIT)
