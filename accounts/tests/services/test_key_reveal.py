from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import KeyReveal
from accounts.services import (
    api_key_reveal_link_create,
    api_key_revoke,
    key_reveal_consume,
    key_reveals_purge,
)
from accounts.tests.factories import api_key_for
from core.exceptions import ApiError

pytestmark = pytest.mark.django_db


def _token(url):
    return url.rstrip("/").rsplit("/", 1)[-1]


def test_link_is_absolute_and_stores_neither_token_nor_plaintext(user, settings):
    settings.SITE_URL = "https://portal.example.com"
    api_key, plaintext = api_key_for(user)
    url = api_key_reveal_link_create(api_key=api_key, plaintext=plaintext)

    assert url.startswith("https://portal.example.com/dashboard/keys/reveal/")
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_keyreveal")
        row = cursor.fetchone()
    assert all(plaintext not in str(value) and _token(url) not in str(value) for value in row)


def test_link_shows_the_key_once_then_wipes_it(user):
    api_key, plaintext = api_key_for(user)
    token = _token(api_key_reveal_link_create(api_key=api_key, plaintext=plaintext))

    first = key_reveal_consume(user=user, token=token)
    assert first.plaintext == plaintext
    reveal = KeyReveal.objects.get()
    assert reveal.secret is None and reveal.revealed_at is not None

    second = key_reveal_consume(user=user, token=token)
    assert second.plaintext is None and second.reason == "already_shown"


def test_link_expires_after_24_hours(user):
    now = timezone.now()
    api_key, plaintext = api_key_for(user)
    token = _token(api_key_reveal_link_create(api_key=api_key, plaintext=plaintext, now=now))
    result = key_reveal_consume(user=user, token=token, now=now + timedelta(hours=24, seconds=1))
    assert result.plaintext is None and result.reason == "expired"
    assert KeyReveal.objects.get().secret is None


def test_link_of_a_revoked_key_shows_nothing(user):
    api_key, plaintext = api_key_for(user)
    token = _token(api_key_reveal_link_create(api_key=api_key, plaintext=plaintext))
    api_key_revoke(workspace=user.personal_workspace, key_id=api_key.pk)
    assert key_reveal_consume(user=user, token=token).plaintext is None


def test_link_is_404_for_another_user(user, other_user):
    api_key, plaintext = api_key_for(user)
    token = _token(api_key_reveal_link_create(api_key=api_key, plaintext=plaintext))
    with pytest.raises(ApiError) as exc:
        key_reveal_consume(user=other_user, token=token)
    assert exc.value.status_code == 404
    assert KeyReveal.objects.get().secret is not None


def test_link_refuses_a_plaintext_of_another_key(user):
    api_key, _ = api_key_for(user)
    _, other_plaintext = api_key_for(user)
    with pytest.raises(ValueError):
        api_key_reveal_link_create(api_key=api_key, plaintext=other_plaintext)


def test_purge_wipes_only_expired_links(user):
    now = timezone.now()
    api_key, plaintext = api_key_for(user)
    api_key_reveal_link_create(api_key=api_key, plaintext=plaintext, now=now - timedelta(days=2))
    api_key_reveal_link_create(api_key=api_key, plaintext=plaintext, now=now)
    assert key_reveals_purge(now=now) == 1
    assert KeyReveal.objects.filter(secret__isnull=False).count() == 1
