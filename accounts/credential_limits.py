"""Rate limits on every door that takes a credential: log-in (page, admin, ``/api/auth/token``),
sign-up (page, ``/api/auth/register``), password reset (request and link) and password change.

Each attempt is counted twice, in the shared cache (django-ratelimit's fixed windows):

- against the client address (``AUTH_RATE_LIMIT``; ``core.clientaddr``: ``NUM_PROXIES``-aware,
  IPv6 grouped by /64), so one client cannot spray passwords over many accounts;
- against the account the request names (``AUTH_ACCOUNT_RATE_LIMIT``): the email typed into a
  form, the user of a reset link. So a botnet, one guess per address, still gets only N guesses
  a window at one account's password.

Doors that test the same secret share their buckets: the log-in page, the admin log-in and the
token API all check a password, so using all three does not multiply the guesses. Over either
limit the door refuses the request before it looks anything up, sends a mail or changes a row,
and says how many seconds are left in the window (``Retry-After``). The counters' cache keys
are hashes: the email is never stored in clear.

Trade-off, accepted as everywhere account lock-outs exist: anyone who keeps guessing at an
account holds its log-in shut for as long as they keep going. Password reset has buckets of its
own, so the owner can still get back in with a reset link.
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
