"""The only module that talks HTTP to Chargily Pay (V2).

Why not the official ``chargily-pay`` package: its 2.1.3 release pins ``requests==2.31``
(we pin 2.34.2), sends requests without timeouts and raises bare ``Exception``. The two calls
we need fit in a page on ``requests``, with timeouts, a pooled session and errors mapped to
:class:`ChargilyServiceError` (a message safe to show an operator, never a key).

Amounts: Chargily takes and sends whole dinars (``"amount": 1590``); the rest of Tollgate
keeps DZD in centimes (ISO 4217 minor units). The conversion happens here and nowhere else.
Tests stub the HTTP boundary with ``responses``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from functools import lru_cache

import requests
from django.conf import settings

logger = logging.getLogger("tollgate.chargily")

API_BASES = {
    "live": "https://pay.chargily.net/api/v2/",
    "test": "https://pay.chargily.net/test/api/v2/",
}
DZD_MINOR_PER_UNIT = 100
MIN_AMOUNT_DZD = 50  # Chargily refuses smaller checkouts


class ChargilyServiceError(Exception):
    """A Chargily call failed. ``message`` never contains a secret."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable


def chargily_is_configured() -> bool:
    """Real Chargily when an API key is set; otherwise the simulated checkout (DEBUG only)."""
    return bool(settings.CHARGILY_API_KEY)


def api_base() -> str:
    if settings.CHARGILY_API_BASE:
        return settings.CHARGILY_API_BASE.rstrip("/") + "/"
    mode = settings.CHARGILY_MODE if settings.CHARGILY_MODE in API_BASES else "test"
    return API_BASES[mode]


def dzd_minor_to_amount(amount_minor: int) -> int:
    """DZD centimes → Chargily's whole-dinar amount (only whole dinars can be charged)."""
    if amount_minor % DZD_MINOR_PER_UNIT:
        raise ValueError("Chargily charges whole dinars: the DZD price must be a multiple of 100 centimes.")
    return amount_minor // DZD_MINOR_PER_UNIT


def amount_to_dzd_minor(amount: int) -> int:
    return int(amount) * DZD_MINOR_PER_UNIT


@lru_cache(maxsize=1)
def _session() -> requests.Session:
    return requests.Session()


def _error_message(response: requests.Response) -> str:
    """Chargily's ``message`` (validation errors), cut short; empty when the body has none."""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("message") or "")[:200] if isinstance(body, dict) else ""


def checkout_create(
    *,
    amount_minor: int,
    success_url: str,
    failure_url: str,
    webhook_endpoint: str,
    description: str,
    metadata: dict[str, str],
    locale: str = "fr",
) -> dict:
    """Create a checkout (``POST /checkouts``) and return Chargily's object as a dict
    (``id``, ``checkout_url``, ``status``, …).

    Never retried automatically: Chargily has no idempotency key, and a second unpaid checkout
    would only confuse the customer; the caller shows the error instead.
    """
    body = {
        "amount": dzd_minor_to_amount(amount_minor),
        "currency": "dzd",
        "success_url": success_url,
        "failure_url": failure_url,
        "webhook_endpoint": webhook_endpoint,
        "description": description[:255],
        "locale": locale,
        "metadata": metadata,
    }
    headers = {
        "Authorization": f"Bearer {settings.CHARGILY_SECRET_KEY}",
        "Accept": "application/json",
    }
    try:
        response = _session().post(
            api_base() + "checkouts", json=body, headers=headers, timeout=settings.CHARGILY_TIMEOUT_SECONDS
        )
    except requests.RequestException as exc:
        logger.warning("chargily checkout create failed: %s", type(exc).__name__)
        raise ChargilyServiceError(
            "Chargily checkout create failed: the payment service is unreachable.", retryable=True
        ) from exc
    if response.status_code >= 400:
        detail = _error_message(response)
        logger.warning("chargily checkout create answered %s", response.status_code)
        raise ChargilyServiceError(
            f"Chargily checkout create failed ({response.status_code}){': ' + detail if detail else ''}",
            status=response.status_code,
            retryable=response.status_code >= 500 or response.status_code == 429,
        )
    try:
        data = response.json()
    except ValueError as exc:
        raise ChargilyServiceError("Chargily checkout create returned a non-JSON body.") from exc
    if not isinstance(data, dict) or not data.get("id") or not data.get("checkout_url"):
        raise ChargilyServiceError("Chargily checkout create returned no checkout id or URL.")
    return data


def signature_compute(*, payload: bytes, secret: str) -> str:
    """Chargily's ``signature`` header: hex HMAC-SHA256 of the raw body with the secret key."""
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def signature_is_valid(*, payload: bytes, signature: str, secret: str) -> bool:
    """Constant-time comparison; a missing signature or secret is never valid."""
    if not signature or not secret:
        return False
    expected = signature_compute(payload=payload, secret=secret)
    return hmac.compare_digest(expected.encode(), signature.strip().encode("utf-8", "replace"))
