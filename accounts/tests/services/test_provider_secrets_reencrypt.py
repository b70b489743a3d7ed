import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from accounts.crypto import ProviderKeyDecryptError
from accounts.models import ProviderCredential
from accounts.selectors import provider_credential_secret, provider_key_get
from accounts.services import provider_secrets_reencrypt
from accounts.tests.factories import global_key_for, personal_key_for

pytestmark = pytest.mark.django_db


def _raw(pk):
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret, fingerprint FROM accounts_providercredential WHERE id = %s", [pk])
        return cursor.fetchone()


def test_salt_rotation_reencrypts_and_the_old_salt_can_be_dropped(user, settings):
    settings.SALT_KEY = ["old-salt"]
    personal = personal_key_for(user, secret="sk-personal-rotate-me-1")
    global_ = global_key_for(secret="sk-global-rotate-me-22")
    before = {pk: _raw(pk) for pk in (personal.pk, global_.pk)}

    settings.SALT_KEY = ["new-salt", "old-salt"]  # step 1: prepend the new salt
    report = provider_secrets_reencrypt()  # step 2: re-encrypt
    assert report.reencrypted == 2 and report.failed == []
    for pk, (old_cipher, old_fingerprint) in before.items():
        new_cipher, new_fingerprint = _raw(pk)
        assert new_cipher != old_cipher
        assert new_fingerprint != old_fingerprint  # signed with the new salt's fingerprint key

    settings.SALT_KEY = ["new-salt"]  # step 3: drop the old salt
    assert (
        provider_key_get(workspace=user.personal_workspace, provider="deepseek").secret
        == "sk-personal-rotate-me-1"
    )
    assert (
        provider_credential_secret(ProviderCredential.objects.get(pk=global_.pk)) == "sk-global-rotate-me-22"
    )


def test_secret_key_rotation_keeps_working_through_fallbacks(user, settings):
    personal_key_for(user, secret="sk-survives-secret-key-change")
    old_secret_key = settings.SECRET_KEY

    settings.SECRET_KEY = "a-brand-new-secret-key-for-django-0123456789"
    settings.SECRET_KEY_FALLBACKS = [old_secret_key]
    assert (
        provider_key_get(workspace=user.personal_workspace, provider="deepseek").secret
        == "sk-survives-secret-key-change"
    )
    call_command("reencrypt_provider_keys")

    settings.SECRET_KEY_FALLBACKS = []
    assert (
        provider_key_get(workspace=user.personal_workspace, provider="deepseek").secret
        == "sk-survives-secret-key-change"
    )


def test_dropping_the_salt_without_reencrypting_fails_clearly(user, settings):
    settings.SALT_KEY = ["old-salt"]
    personal_key_for(user, secret="sk-not-reencrypted-123")
    settings.SALT_KEY = ["new-salt"]
    settings.FIELD_FINGERPRINT_KEY = ["stable-fingerprint"]  # isolate the decryption failure
    with pytest.raises(ProviderKeyDecryptError):
        provider_key_get(workspace=user.personal_workspace, provider="deepseek")


def test_command_reports_rows_it_cannot_decrypt_and_leaves_them(user, settings):
    settings.SALT_KEY = ["old-salt"]
    credential = personal_key_for(user, secret="sk-lost-key-12345")
    before = _raw(credential.pk)
    settings.SALT_KEY = ["unrelated-salt"]

    with pytest.raises(CommandError, match="did not verify"):
        call_command("reencrypt_provider_keys")
    assert _raw(credential.pk) == before
