"""Users: sign-up, DRF tokens, bulk creation."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from core.exceptions import ApiError

from ..models import User
from .errors import field_error  # re-exported: the workspaces module imports it from here

# isort: split
from .verification import email_verification_send
from .workspaces import workspaces_personal_bulk_create  # after field_error is bound (see above)

__all__ = [
    "field_error",
    "user_language_set",
    "user_register",
    "user_token_get_or_create",
    "user_tokens_revoke",
    "users_bulk_create",
]

logger = logging.getLogger("tollgate.accounts")


# --- Users ------------------------------------------------------------------------------------


def user_register(*, email: str, password: str, name: str = "", language: str = "") -> User:
    """Create a customer account and its DRF token, and mail the link that confirms the address
    (in ``language``, the sign-up page's, when it is one of ``settings.LANGUAGES``; blank:
    English). Duplicate email / weak password → 400."""
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise field_error("email", "Enter a valid email address.")
    if User.objects.filter(email__iexact=email).exists():
        raise field_error("email", "An account with this email already exists.")
    candidate = User(email=email, name=name)
    try:
        password_validation.validate_password(password, user=candidate)
    except ValidationError as exc:
        messages = list(exc.messages)
        raise ApiError("invalid_request", " ".join(messages), param="password", errors={"password": messages})
    try:
        with transaction.atomic():
            user = User.objects.create_user(
                email=email, password=password, name=name, language=_language_clean(language)
            )
            Token.objects.create(user=user)
    except IntegrityError:  # a concurrent sign-up with the same email won the race
        raise field_error("email", "An account with this email already exists.")
    transaction.on_commit(lambda: email_verification_send(user=user))
    logger.info("user registered", extra={"user_id": user.pk})
    return user


def _language_clean(language: str) -> str:
    return language if language in dict(settings.LANGUAGES) else ""


def user_language_set(*, user: User, language: str) -> bool:
    """Store the language the user's emails are written in (one column). False, and nothing
    stored, for a language the site does not speak."""
    if language not in dict(settings.LANGUAGES):
        return False
    if user.language != language:
        user.language = language
        user.save(update_fields=["language"])
    return True


def user_token_get_or_create(*, user: User) -> str:
    token, _ = Token.objects.get_or_create(user=user)
    return token.key


def user_tokens_revoke(*, user_id: int) -> int:
    """End the user's DRF tokens, as a new password ends their sessions: whoever held the old
    password (or a token issued under it) must not keep API access. The next
    ``/api/auth/token`` issues a new one. Customer API keys (sk_agentai_…) are machine
    credentials managed on their own and are left alone. Returns how many were revoked."""
    revoked, _ = Token.objects.filter(user_id=user_id).delete()
    if revoked:
        logger.info("user tokens revoked", extra={"user_id": user_id, "count": revoked})
    return revoked


def users_bulk_create(*, accounts: list[tuple[str, str]]) -> list[User]:
    """Create one user per ``(email, name)`` in a single INSERT, each with an unusable password,
    no token, a confirmed address and a personal workspace: synthetic accounts for benchmarks and
    demo data, never a sign-up."""
    password = make_password(None)
    with transaction.atomic():
        users = User.objects.bulk_create(
            [
                User(email=email.lower(), name=name, password=password, email_verified_at=timezone.now())
                for email, name in accounts
            ]
        )
        workspaces_personal_bulk_create(users=users)
    return users
