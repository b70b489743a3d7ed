"""Email verification: a signed link proves the address belongs to the person who signed up.

With ``EMAIL_VERIFICATION=mandatory`` (the production default) an unverified account can sign in
and see its pages, but its keys answer ``403 email_unverified``: one person cannot farm free
quotas from made-up addresses. An invitation's link confirms the address it was mailed to
(``accounts.services.workspaces.invitation_accept``). ``optional`` (``make run``) only
reminds. The link is a ``TimestampSigner`` signature of the user id and the address, so it
needs no table, stops working if the address changes, and expires after
``EMAIL_VERIFICATION_MAX_AGE_SECONDS``.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core import signing
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from core.exceptions import ApiError
from core.mail import mail_send_localized

from ..models import User

logger = logging.getLogger("tollgate.accounts")

_SALT = "accounts.email-verification"


def email_verification_required() -> bool:
    return settings.EMAIL_VERIFICATION == "mandatory"


def user_email_verified(user: User) -> bool:
    """Whether the account's keys may be used (always, unless verification is mandatory)."""
    return user.email_verified_at is not None or not email_verification_required()


def email_verification_token_make(*, user: User) -> str:
    return signing.TimestampSigner(salt=_SALT).sign_object({"u": user.pk, "e": user.email})


def email_verification_link(*, user: User) -> str:
    token = email_verification_token_make(user=user)
    return settings.SITE_URL + reverse("accounts:email-verify", args=[token])


def email_verification_send(*, user: User) -> None:
    """Mail the link (console backend locally). Does nothing for a verified address."""
    if user.email_verified_at is not None:
        return
    context = {"user": user, "verify_url": email_verification_link(user=user)}

    def build() -> tuple[str, str]:
        return _("Confirm your email address"), render_to_string("accounts/email/verify_email.txt", context)

    mail_send_localized(recipients=[(user.email, user.language)], build=build)
    logger.info("email verification sent", extra={"user_id": user.pk})


def email_verify(*, token: str, now=None) -> User:
    """Mark the address of the link's account verified (idempotent). A bad, expired or stale
    link (the address changed since) raises ``ApiError`` ``invalid_request``."""
    try:
        payload = signing.TimestampSigner(salt=_SALT).unsign_object(
            token, max_age=settings.EMAIL_VERIFICATION_MAX_AGE_SECONDS
        )
    except signing.SignatureExpired:
        raise ApiError("invalid_request", "This confirmation link has expired; ask for a new one.") from None
    except (signing.BadSignature, ValueError, TypeError):
        raise ApiError("invalid_request", "This confirmation link is not valid.") from None
    user = User.objects.filter(pk=payload.get("u"), email=payload.get("e"), is_active=True).first()
    if user is None:
        raise ApiError("invalid_request", "This confirmation link is not valid.")
    if user.email_verified_at is None:
        user.email_verified_at = now or timezone.now()
        user.save(update_fields=["email_verified_at"])
        logger.info("email verified", extra={"user_id": user.pk})
    return user


def email_verified_by_proof(*, user: User, now=None) -> None:
    """Mark the address confirmed by another proof of the mailbox (a used invitation link)."""
    if user.email_verified_at is None:
        user.email_verified_at = now or timezone.now()
        user.save(update_fields=["email_verified_at"])


def email_unverified_error() -> ApiError:
    return ApiError(
        "email_unverified",
        "Confirm your email address to use this key: follow the link we sent,"
        " or ask for a new one on your profile page.",
    )
