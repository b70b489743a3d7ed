"""``model_rows_get`` must hand back exactly what the ORM would (converters included)."""

import pytest

from accounts.models import ProviderCredential, User
from accounts.services import provider_credential_set
from core.rawsql import model_rows_get

pytestmark = pytest.mark.django_db


def _fields(instance):
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def test_encrypted_fields_decrypt_as_with_the_orm():
    stored = provider_credential_set(
        scope=ProviderCredential.Scope.GLOBAL, provider="deepseek", secret="sk-raw-0123456789"
    )

    [row] = model_rows_get(ProviderCredential, where='"provider" = %s', params=["deepseek"])

    assert row.secret == "sk-raw-0123456789"
    assert _fields(row) == _fields(ProviderCredential.objects.get(pk=stored.pk))
    assert row._state.adding is False


def test_rows_match_the_condition_only():
    active = User.objects.create_user(email="raw-active@example.com", password="x" * 12)
    User.objects.create_user(email="raw-gone@example.com", password="x" * 12, is_active=False)

    rows = model_rows_get(User, where='"is_active" AND "email" LIKE %s', params=["raw-%"])

    assert [u.pk for u in rows] == [active.pk]
    assert _fields(rows[0]) == _fields(User.objects.get(pk=active.pk))
