"""Rate limits on every door that takes a credential: log-in (page, admin, ``/api/auth/token``),
sign-up (page, ``/api/auth/register``), password reset (request and link) and password change.

Each attempt counts against the client address (``AUTH_RATE_LIMIT``) and against the account it
names (``AUTH_ACCOUNT_RATE_LIMIT``), so neither one client spraying many accounts nor a botnet
guessing at one gets more than N tries a window. Doors that test the same secret share buckets;
over a limit the door refuses before it looks anything up (``Retry-After``). The trade-offs (an
account lock-out; reset keeps its own buckets) are in docs/accounts.md.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from django.conf import settings
from django_ratelimit.core import get_usage

from core.clientaddr import client_address_get

logger = logging.getLogger("tollgate.accounts")

ACCOUNT_VALUE_MAX_LENGTH = 320  # longer "emails" are cut (the key is hashed anyway)


class CredentialDoor(StrEnum):
    """Doors that share a name share their counters (one per address, one per account)."""

    LOGIN = "login"
    SIGNUP = "signup"
    PASSWORD_RESET = "password-reset"
    PASSWORD_RESET_CONFIRM = "password-reset-confirm"
    PASSWORD_CHANGE = "password-change"


def credential_attempt_address_count(*, request, door: CredentialDoor) -> int | None:
    """Count one attempt from the client's address. Seconds to wait when over the limit, else None."""
    address = client_address_get(request)
    return _attempt_count(
        request, group=f"auth:{door}:address", value=address, rate=settings.AUTH_RATE_LIMIT, door=door
    )


def credential_attempt_account_count(*, request, door: CredentialDoor, account: str | None) -> int | None:
    """Count one attempt at ``account`` (an email, case and spaces ignored, or a user id).

    Nothing is counted for an empty value: a form without it is refused by its own validation.
    """
    value = str(account or "").strip().lower()[:ACCOUNT_VALUE_MAX_LENGTH]
    if not value:
        return None
    return _attempt_count(
        request, group=f"auth:{door}:account", value=value, rate=settings.AUTH_ACCOUNT_RATE_LIMIT, door=door
    )


def credential_attempt_count(*, request, door: CredentialDoor, account: str | None) -> int | None:
    """Both counts; the account is not counted when the address is already refused."""
    wait = credential_attempt_address_count(request=request, door=door)
    if wait is not None:
        return wait
    return credential_attempt_account_count(request=request, door=door, account=account)


def _attempt_count(request, *, group: str, value: str, rate: str, door: CredentialDoor) -> int | None:
    usage = get_usage(request, group=group, key=lambda _group, _request: value, rate=rate, increment=True)
    if usage is None or not usage["should_limit"]:  # limits off (RATELIMIT_ENABLE) or under them
        return None
    if usage["count"] == usage["limit"] + 1:  # once per window, not once per refused attempt
        scope = group.rsplit(":", 1)[1]
        # The address is logged for the operator; the account (an email) is not.
        extra = {"door": str(door), "scope": scope}
        if scope == "address":
            extra["address"] = value
        logger.warning("credential attempts over the limit", extra=extra)
    return max(int(usage["time_left"]), 1)
