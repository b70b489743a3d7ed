"""Suite-wide secret leak detection: every secret the tests create is registered here, every
log record emitted during the run is tokenised, and the session fails if the two meet.

Secrets are registered automatically (customer API keys as they are generated, provider keys
as they are stored, webhook/API secrets from settings after each test) and by hand through the
``secret_registry`` fixture for anything else.
"""

from __future__ import annotations

import logging
import re
import threading

from django.conf import settings

import accounts.keys
import accounts.services

# A full customer key (prefix + 40 body + 6 checksum) is a leak whether registered or not.
FULL_CUSTOMER_KEY = re.compile(r"sk_agentai_[0-9A-Za-z]{46}")
_TOKEN = re.compile(r"[A-Za-z0-9_\-.:+/=]{8,}")
MIN_SECRET_LENGTH = 8
SECRET_SETTINGS = (
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "CHARGILY_SECRET_KEY",
    "CHARGILY_API_KEY",
    "BILLING_API_TOKEN",
    "METRICS_TOKEN",
    "SECRET_KEY",
    "SALT_KEY",
)
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class SecretRegistry:
    def __init__(self):
        self._lock = threading.Lock()
        self.secrets: set[str] = set()
        self.logged: dict[str, str] = {}  # token -> where it was first logged
        self.current_test = "(session)"

    def add(self, secret) -> None:
        values = secret if isinstance(secret, list | tuple | set) else [secret]
        with self._lock:
            for value in values:
                if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
                    self.secrets.add(value)

    def observe(self, text: str, *, origin: str) -> None:
        tokens = set(_TOKEN.findall(text))
        # Also the parts between separators that the token pattern keeps together.
        for token in list(tokens):
            tokens.update(part for part in re.split(r"[=:/+]", token) if len(part) >= MIN_SECRET_LENGTH)
        with self._lock:
            for token in tokens:
                self.logged.setdefault(token, f"{origin} during {self.current_test}")

    def leaks(self) -> dict[str, str]:
        with self._lock:
            found = {secret: self.logged[secret] for secret in self.secrets if secret in self.logged}
            for token, where in self.logged.items():
                for match in FULL_CUSTOMER_KEY.findall(token):
                    found.setdefault(match, where)
        return found


REGISTRY = SecretRegistry()


class LeakCaptureHandler(logging.Handler):
    """Feeds every record (message, extra fields, traceback) to the registry."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            parts = [record.getMessage()]
            parts.extend(
                repr(value)
                for key, value in vars(record).items()
                if key not in _STANDARD_ATTRS and not key.startswith("_")
            )
            if record.exc_info:
                parts.append(logging.Formatter().formatException(record.exc_info))
            REGISTRY.observe("\n".join(parts), origin=f"logger {record.name!r}")
        except Exception:  # a capture problem must never break the test that logged
            self.handleError(record)


def settings_secrets_register() -> None:
    for name in SECRET_SETTINGS:
        REGISTRY.add(getattr(settings, name, None))


def factories_instrument() -> None:
    """Register customer keys as generated and provider keys as stored, wherever the test made them."""
    original_generate = accounts.keys.api_key_generate
    original_clean = accounts.services.provider_keys.provider_secret_clean

    def api_key_generate():
        plaintext = original_generate()
        REGISTRY.add(plaintext)
        return plaintext

    def provider_secret_clean(secret):
        cleaned = original_clean(secret)
        REGISTRY.add(cleaned)
        return cleaned

    accounts.keys.api_key_generate = api_key_generate
    accounts.services.keys.api_key_generate = api_key_generate
    accounts.services.provider_keys.provider_secret_clean = provider_secret_clean
    accounts.services.provider_secret_clean = provider_secret_clean
