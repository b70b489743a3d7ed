import logging

import pytest
from django.db import connection

from accounts.crypto import ProviderKeyDecryptError
from accounts.models import ProviderCredential
from accounts.selectors import provider_credential_secret
from accounts.services import provider_credential_delete, provider_credential_set
from accounts.tests.factories import global_key_for, personal_key_for
from core.exceptions import ApiError

pytestmark = pytest.mark.django_db

SECRET = "sk-live-0123456789abcdefXYZ"


def _raw_secret_column(pk):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret, fingerprint, masked FROM accounts_providercredential WHERE id = %s", [pk]
        )
        return cursor.fetchone()


def test_secret_is_encrypted_at_rest_and_masked(user):
    credential = personal_key_for(user, secret=SECRET)

    raw_secret, fingerprint, masked = _raw_secret_column(credential.pk)
    assert SECRET not in raw_secret
    assert SECRET[5:-2] not in raw_secret
    assert SECRET not in fingerprint
    assert masked == "sk-li…YZ"
    stored = ProviderCredential.objects.get(pk=credential.pk)
    assert provider_credential_secret(stored) == SECRET


def test_set_replaces_the_workspaces_existing_key(user):
    personal_key_for(user, secret="sk-first-secret-000")
    personal_key_for(user, secret="sk-second-secret-11")
    rows = ProviderCredential.objects.filter(workspace=user.personal_workspace, provider="deepseek")
    assert rows.count() == 1
    assert provider_credential_secret(rows.get()) == "sk-second-secret-11"


def test_set_strips_surrounding_whitespace(user):
    credential = personal_key_for(user, secret="  sk-with-spaces-123\n")
    assert (
        provider_credential_secret(ProviderCredential.objects.get(pk=credential.pk)) == "sk-with-spaces-123"
    )


@pytest.mark.parametrize("secret", ["", "   ", "x" * 513, "sk-two\nlines", "sk has space"])
def test_set_refuses_empty_overlong_or_garbled_secrets(user, secret):
    with pytest.raises(ApiError) as exc:
        personal_key_for(user, secret=secret)
    assert exc.value.status_code == 400
    assert exc.value.param == "key"
    assert not ProviderCredential.objects.exists()


def test_set_accepts_exactly_512_characters(user):
    credential = personal_key_for(user, secret="k" * 512)
    assert provider_credential_secret(ProviderCredential.objects.get(pk=credential.pk)) == "k" * 512


def test_unknown_provider_is_404(user):
    with pytest.raises(ApiError) as exc:
        personal_key_for(user, provider="nope")
    assert exc.value.status_code == 404


def test_global_and_workspace_rows_coexist(user):
    global_key_for(secret="sk-global-abcdefghij")
    personal_key_for(user, secret="sk-personal-1234567890")
    assert ProviderCredential.objects.filter(scope="global", workspace__isnull=True).count() == 1
    assert (
        ProviderCredential.objects.filter(scope="workspace", workspace=user.personal_workspace).count() == 1
    )


def test_delete_removes_only_the_chosen_scope(user):
    global_key_for()
    personal_key_for(user)
    workspace = user.personal_workspace
    assert provider_credential_delete(scope="workspace", provider="deepseek", workspace=workspace) is True
    assert provider_credential_delete(scope="workspace", provider="deepseek", workspace=workspace) is False
    assert ProviderCredential.objects.filter(scope="global").exists()


def test_a_scope_and_its_owner_must_match(user):
    with pytest.raises(ValueError):
        provider_credential_set(scope="workspace", provider="deepseek", secret="sk-no-owner-123456")
    with pytest.raises(ValueError):
        provider_credential_set(
            scope="global",
            provider="deepseek",
            secret="sk-two-owners-1234",
            workspace=user.personal_workspace,
        )
    assert not ProviderCredential.objects.exists()


def test_logs_never_contain_the_secret(user, caplog):
    caplog.set_level(logging.DEBUG)
    credential = personal_key_for(user, secret=SECRET)
    provider_credential_delete(
        scope="workspace", provider=credential.provider, workspace=user.personal_workspace
    )
    text = caplog.text + " ".join(str(vars(record)) for record in caplog.records)
    assert "provider key set" in caplog.text
    assert SECRET not in text


def test_wrong_key_raises_a_clear_error_not_the_ciphertext(user, settings):
    credential = personal_key_for(user, secret=SECRET)
    raw_secret, _, _ = _raw_secret_column(credential.pk)

    settings.SALT_KEY = ["a-completely-different-salt"]
    settings.FIELD_FINGERPRINT_KEY = ["fingerprint-key-kept-across-the-change"]
    stored = ProviderCredential.objects.get(pk=credential.pk)
    assert stored.secret == raw_secret  # the library's trap: ciphertext handed back silently

    with pytest.raises(ProviderKeyDecryptError) as exc:
        provider_credential_secret(stored)
    assert exc.value.status_code == 503
    assert raw_secret not in str(exc.value.as_dict())
    assert "cannot be decrypted" in exc.value.message


def test_tampered_ciphertext_raises_a_clear_error(user):
    credential = personal_key_for(user, secret=SECRET)
    raw_secret, _, _ = _raw_secret_column(credential.pk)
    tampered = raw_secret[:-8] + ("A" if raw_secret[-8] != "A" else "B") + raw_secret[-7:]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE accounts_providercredential SET secret = %s WHERE id = %s", [tampered, credential.pk]
        )

    with pytest.raises(ProviderKeyDecryptError) as exc:
        provider_credential_secret(ProviderCredential.objects.get(pk=credential.pk))
    assert tampered not in str(exc.value.as_dict())
