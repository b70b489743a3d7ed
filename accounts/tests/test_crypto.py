import pytest

from accounts.checks import encryption_roundtrip_check
from accounts.crypto import (
    crypto_self_test,
    secret_fingerprint,
    secret_fingerprint_matches,
    secret_mask,
)


def test_mask_shows_first_five_and_last_two():
    assert secret_mask("sk-1234567890abcdef89") == "sk-12…89"
    assert secret_mask("short") == "…rt"
    assert secret_mask("abc") == "…"


def test_fingerprint_ignores_secret_key_rotation(settings):
    before = secret_fingerprint("sk-abc")
    settings.SECRET_KEY = "another-django-secret-key-entirely-0123456789"
    assert secret_fingerprint("sk-abc") == before


def test_fingerprint_follows_the_first_salt_and_verifies_with_older_ones(settings):
    settings.SALT_KEY = ["old"]
    old = secret_fingerprint("sk-abc")
    settings.SALT_KEY = ["new", "old"]
    assert secret_fingerprint("sk-abc") != old
    assert secret_fingerprint_matches("sk-abc", old)
    settings.SALT_KEY = ["new"]
    assert not secret_fingerprint_matches("sk-abc", old)


def test_explicit_fingerprint_key_wins_over_salts(settings):
    settings.FIELD_FINGERPRINT_KEY = ["dedicated"]
    value = secret_fingerprint("sk-abc")
    settings.SALT_KEY = ["something-else"]
    assert secret_fingerprint_matches("sk-abc", value)
    assert not secret_fingerprint_matches("sk-abd", value)
    assert not secret_fingerprint_matches("sk-abc", "")


def test_self_test_passes_with_the_configured_keys():
    assert crypto_self_test() is None
    assert encryption_roundtrip_check(None) == []


def test_self_test_reports_a_missing_salt(settings):
    settings.SALT_KEY = []
    assert "SALT_KEY" in crypto_self_test()
    errors = encryption_roundtrip_check(None)
    assert [e.id for e in errors] == ["accounts.E001"]


@pytest.mark.parametrize("salt", ["s", "a-longer-salt-value"])
def test_self_test_passes_for_any_salt(settings, salt):
    settings.SALT_KEY = [salt]
    assert crypto_self_test() is None
