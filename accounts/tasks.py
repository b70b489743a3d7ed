"""Periodic housekeeping for accounts. Thin and idempotent: each run calls one service."""

from celery import shared_task

from .services import key_reveals_purge


@shared_task(name="accounts.key_reveals_purge")
def key_reveals_purge_task() -> int:
    """Wipe the encrypted plaintext of expired, never-opened key-reveal links."""
    return key_reveals_purge()
