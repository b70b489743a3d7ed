"""System checks: provider-key encryption works; production mail is really sent."""

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.db import DatabaseError

from .crypto import ProviderKeyDecryptError, crypto_self_test, secret_verify
from .models import ProviderCredential


@register()
def encryption_roundtrip_check(app_configs, **kwargs):
    problem = crypto_self_test()
    if problem:
        return [Error(f"Provider-key encryption is misconfigured: {problem}", id="accounts.E001")]
    return []


# How many stored secrets the database check samples (newest first): enough to catch a dropped
# key, cheap enough for every `migrate` / `check --database default`.
STORED_SECRETS_SAMPLE = 20


@register(Tags.database)
def stored_secrets_decrypt_check(app_configs, databases=None, **kwargs):
    """Stored provider keys still decrypt and verify with the configured keys.

    The round-trip check above cannot see a key that was dropped too early (before
    ``reencrypt_provider_keys``): fresh values encrypt fine while every stored one is unreadable.
    Database-tagged, so ``migrate`` (the deploy's first step) and ``check --database default`` fail.
    """
    if not databases:
        return []

    try:
        rows = list(
            ProviderCredential.objects.order_by("-pk").values_list(
                "pk", "provider", "scope", "secret", "fingerprint"
            )[:STORED_SECRETS_SAMPLE]
        )
    except DatabaseError:  # not migrated yet: nothing stored to verify
        return []
    unreadable = []
    for pk, provider, scope, secret, fingerprint in rows:
        try:
            secret_verify(secret, fingerprint, provider=provider, scope=scope, credential_id=pk)
        except ProviderKeyDecryptError:
            unreadable.append(pk)
    if unreadable:
        return [
            Error(
                f"Provider-key encryption is misconfigured: {len(unreadable)} of the {len(rows)} "
                "newest stored provider keys do not decrypt with SECRET_KEY/SALT_KEY "
                "(was an old key dropped before running reencrypt_provider_keys?).",
                id="accounts.E001",
            )
        ]
    return []


# Backends that write every message, password-reset and key-reveal links included, where the
# server's operators (and its log shipping) can read them.
MAIL_TO_LOG_BACKENDS = frozenset(
    {
        "django.core.mail.backends.console.EmailBackend",
        "django.core.mail.backends.filebased.EmailBackend",
    }
)


@register()
def email_backend_check(app_configs, **kwargs):
    """Production refuses a backend that writes mail to the log instead of sending it.

    The console backend is the embedded default; left in place in production it prints every
    password-reset link, a credential, into the server log. Not tagged ``deploy``: ``migrate``
    and ``runserver`` run it too, so a production deploy without ``EMAIL_URL`` stops at its first
    step. ``EMAIL_ALLOW_CONSOLE=1`` is the explicit opt-out.
    """
    if not settings.IS_PRODUCTION or settings.TESTING or settings.EMAIL_ALLOW_CONSOLE:
        return []
    if settings.EMAIL_BACKEND not in MAIL_TO_LOG_BACKENDS:
        return []
    return [
        Error(
            f"EMAIL_BACKEND is {settings.EMAIL_BACKEND} in production: password-reset links would be "
            "written to the server's log or disk instead of being sent.",
            hint="Set EMAIL_URL (e.g. smtp+tls://user:password@smtp.example.com:587), or "
            "EMAIL_ALLOW_CONSOLE=1 if the log is meant to carry them.",
            id="accounts.E002",
        )
    ]
