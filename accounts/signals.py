"""Keep credentials, and the shared-cache facts the proxy trusts, in step with the database.

- Saving a user inactive overwrites the cached identities of the keys they created with the
  revoked marker (after commit), so their next call answers 401 from any worker; saving them
  active drops it.
- A new account gets its personal workspace (any path: sign-up, admin, createsuperuser).
- A new password (``set_password`` then ``save``) ends the user's DRF tokens, as it ends sessions.
- Any provider-key change bumps ``PROVIDER_KEYS_VERSION_KEY``; workers drop decrypted keys.

Signals, because the admin saves these models directly. ``QuerySet.update`` sends none: bulk
code must call ``user_keys_cache_publish`` / ``provider_keys_version_bump`` itself.
"""

from __future__ import annotations

import uuid

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import ApiKey, ProviderCredential, User
from .selectors import (
    API_KEY_CACHE_SECONDS,
    API_KEY_REVOKED_MARKER,
    PROVIDER_KEYS_VERSION_KEY,
    api_key_cache_key,
)
from .services import user_tokens_revoke, workspace_personal_create


def user_keys_cache_publish(*, user_id: int, is_active: bool) -> None:
    """After commit: the entries of the keys an inactive user created (in any workspace) become
    the revoked marker; an active one's are dropped (the next call re-reads them). Revoked keys
    keep their own marker."""
    hashes = list(
        ApiKey.objects.filter(created_by_id=user_id, revoked_at__isnull=True).values_list(
            "key_hash", flat=True
        )
    )
    if not hashes:
        return
    keys = [api_key_cache_key(key_hash) for key_hash in hashes]
    if is_active:
        transaction.on_commit(lambda: cache.delete_many(keys))
    else:
        transaction.on_commit(
            lambda: cache.set_many(dict.fromkeys(keys, API_KEY_REVOKED_MARKER), API_KEY_CACHE_SECONDS)
        )


def provider_keys_version_bump() -> None:
    transaction.on_commit(lambda: cache.set(PROVIDER_KEYS_VERSION_KEY, uuid.uuid4().hex, None))


@receiver(post_save, sender=User, dispatch_uid="accounts.user_saved")
def _user_saved(sender, instance: User, created: bool, update_fields=None, **kwargs) -> None:
    if created or (update_fields is not None and "is_active" not in update_fields):
        return  # a new user has no key yet; a login's last_login save changes nothing here
    user_keys_cache_publish(user_id=instance.pk, is_active=instance.is_active)


@receiver(post_save, sender=User, dispatch_uid="accounts.user_password_saved")
def _user_password_saved(sender, instance: User, created: bool, **kwargs) -> None:
    # AbstractBaseUser keeps the raw password in ``_password`` until the save after
    # ``set_password`` returns, and clears it for a hash upgrade at log-in (not a change).
    if not created and getattr(instance, "_password", None) is not None:
        user_tokens_revoke(user_id=instance.pk)


@receiver(post_save, sender=ProviderCredential, dispatch_uid="accounts.credential_saved")
@receiver(post_delete, sender=ProviderCredential, dispatch_uid="accounts.credential_deleted")
def _credential_changed(sender, **kwargs) -> None:
    provider_keys_version_bump()


@receiver(post_save, sender=User, dispatch_uid="accounts.user_personal_workspace")
def _user_created(sender, instance: User, created: bool, raw: bool = False, **kwargs) -> None:
    # Every account has a personal workspace, however it was made (sign-up, the admin,
    # ``createsuperuser``, a fixture load is ``raw`` and brings its own rows).
    if created and not raw:
        workspace_personal_create(user=instance)
