"""Fingerprints, masking and key checks for provider secrets.

The encryption is django-fernet-encrypted-fields' (one key per ``SECRET_KEY`` × ``SALT_KEY``
pair, which makes rotation possible). It returns the *ciphertext* silently under a wrong key, so
every secret has an HMAC-SHA256 fingerprint beside it, checked after decryption
(:func:`secret_verify`); it stores ``""`` as NULL and cannot be filtered on, so empty secrets are
refused and lookups never use it. The fingerprint key (``FIELD_FINGERPRINT_KEY``, else derived
from ``SALT_KEY``) is independent of ``SECRET_KEY``. Rotation steps: docs/accounts.md.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from django.apps import apps
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from encrypted_fields.fields import EncryptedFieldMixin, EncryptedTextField

from core.exceptions import ApiError

_FINGERPRINT_CONTEXT = b"tollgate:provider-secret-fingerprint:v1"
_SELF_TEST_VALUE = "tollgate-encryption-self-test"
ENCRYPTION_SETTINGS = {"SECRET_KEY", "SECRET_KEY_FALLBACKS", "SALT_KEY", "FIELD_FINGERPRINT_KEY"}


class ProviderKeyDecryptError(ApiError):
    """A stored secret did not decrypt to what was stored (wrong key or tampered row).

    Rendered as a 503 without any part of the stored value, so the ciphertext never reaches a
    provider, a client or a log line.
    """

    def __init__(self, *, provider: str, scope: str, credential_id: int | None = None):
        super().__init__(
            "service_unavailable",
            f"The stored {provider} key ({scope}) cannot be decrypted with the configured "
            "encryption keys. An operator must restore the previous SECRET_KEY/SALT_KEY or "
            "set the key again.",
        )
        self.provider = provider
        self.scope = scope
        self.credential_id = credential_id


def _as_list(value) -> list[str]:
    if not value:
        return []
    return [value] if isinstance(value, str) else [v for v in value if v]


@lru_cache(maxsize=8)
def _fingerprint_keys(explicit: tuple[str, ...], salts: tuple[str, ...]) -> tuple[bytes, ...]:
    sources = explicit or salts
    return tuple(
        hmac.new(source.encode(), _FINGERPRINT_CONTEXT, hashlib.sha256).digest() for source in sources
    )


def fingerprint_keys() -> tuple[bytes, ...]:
    """HMAC keys: the first signs new fingerprints, every one verifies."""
    explicit = tuple(_as_list(getattr(settings, "FIELD_FINGERPRINT_KEY", [])))
    salts = tuple(_as_list(settings.SALT_KEY))
    return _fingerprint_keys(explicit, salts)


def secret_fingerprint(secret: str) -> str:
    keys = fingerprint_keys()
    if not keys:
        raise RuntimeError("No fingerprint key: set SALT_KEY or FIELD_FINGERPRINT_KEY.")
    return hmac.new(keys[0], secret.encode(), hashlib.sha256).hexdigest()


def secret_fingerprint_matches(secret: str, fingerprint: str) -> bool:
    if not isinstance(secret, str) or not fingerprint:
        return False
    return any(
        hmac.compare_digest(hmac.new(key, secret.encode(), hashlib.sha256).hexdigest(), fingerprint)
        for key in fingerprint_keys()
    )


def secret_verify(secret, fingerprint: str, *, provider: str, scope: str, credential_id=None) -> str:
    """Return the decrypted secret, or raise if it is not the value that was stored."""
    if not secret_fingerprint_matches(secret, fingerprint):
        raise ProviderKeyDecryptError(provider=provider, scope=scope, credential_id=credential_id)
    return secret


def secret_mask(secret: str) -> str:
    """First 5 and last 2 characters (``sk-12…89``); short secrets show only the tail."""
    if len(secret) <= 8:
        return "…" + secret[-2:] if len(secret) > 4 else "…"
    return f"{secret[:5]}…{secret[-2:]}"


def encrypted_fields_reset() -> None:
    """Forget the Fernet keys the encrypted fields cached, so new settings take effect.

    The library caches its derived keys per field instance for the life of the process; a
    settings change (tests, or a reload) must drop them.
    """
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if isinstance(field, EncryptedFieldMixin):
                field.__dict__.pop("keys", None)
                field.__dict__.pop("f", None)


@receiver(setting_changed)
def _on_setting_changed(*, setting, **kwargs):
    if setting in ENCRYPTION_SETTINGS:
        encrypted_fields_reset()


def crypto_self_test() -> str | None:
    """Encrypt and decrypt a known value with the configured keys; a problem text or None."""
    if not _as_list(settings.SALT_KEY):
        return "SALT_KEY is empty."
    if not settings.SECRET_KEY:
        return "SECRET_KEY is empty."
    field = EncryptedTextField()  # fresh instance: derives keys from the current settings
    try:
        token = field.get_prep_value(_SELF_TEST_VALUE)
        if not token or _SELF_TEST_VALUE in token:
            return "the encrypted value contains the plaintext."
        if field.to_python(token) != _SELF_TEST_VALUE:
            return "a freshly encrypted value does not decrypt."
        fingerprint = secret_fingerprint(_SELF_TEST_VALUE)
    except Exception as exc:  # any failure here is a configuration error; name its type only
        return f"{type(exc).__name__} while encrypting a test value."
    if not secret_fingerprint_matches(_SELF_TEST_VALUE, fingerprint):
        return "fingerprints do not verify."
    return None
