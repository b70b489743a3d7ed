import threading
from datetime import timedelta

import pytest
from django.core.cache import cache, caches
from django.db import connection, connections
from django.utils import timezone

import accounts.selectors as selectors
from accounts.keys import api_key_hash, api_key_is_well_formed
from accounts.models import ApiKey
from accounts.selectors import API_KEY_REVOKED_MARKER, api_key_cache_key, api_key_identity_get
from accounts.services import api_key_create, api_key_revoke, api_key_rotate, api_key_touch
from accounts.tests.factories import UserFactory, api_key_for
from core.exceptions import ApiError

pytestmark = pytest.mark.django_db


def test_create_returns_well_formed_plaintext_and_stores_only_its_hash(user):
    api_key, plaintext = api_key_create(workspace=user.personal_workspace, created_by=user, name="ci")

    assert api_key_is_well_formed(plaintext)
    assert plaintext.startswith("sk_agentai_")
    assert api_key.key_hash == api_key_hash(plaintext)
    assert plaintext.startswith(api_key.prefix) and len(api_key.prefix) < len(plaintext) // 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey WHERE id = %s", [api_key.pk])
        row = cursor.fetchone()
    assert all(plaintext not in str(value) for value in row)
    body = plaintext[len("sk_agentai_") :]
    assert all(body not in str(value) for value in row)


def test_create_refuses_blank_name(user):
    with pytest.raises(ApiError) as exc:
        api_key_create(workspace=user.personal_workspace, created_by=user, name="   ")
    assert exc.value.status_code == 400 and exc.value.param == "name"


def test_create_enforces_the_active_key_limit(user, settings):
    settings.API_KEYS_PER_USER_LIMIT = 2
    first, _ = api_key_create(workspace=user.personal_workspace, created_by=user, name="a")
    api_key_create(workspace=user.personal_workspace, created_by=user, name="b")

    with pytest.raises(ApiError) as exc:
        api_key_create(workspace=user.personal_workspace, created_by=user, name="c")
    assert exc.value.status_code == 400
    assert exc.value.extra["limit"] == 2

    api_key_revoke(workspace=user.personal_workspace, key_id=first.pk)
    api_key_create(
        workspace=user.personal_workspace, created_by=user, name="c"
    )  # a revoked key frees its slot
    assert ApiKey.objects.filter(workspace=user.personal_workspace).count() == 3


def test_revoke_is_idempotent_and_keeps_the_first_timestamp(user):
    api_key, _ = api_key_for(user)
    first = api_key_revoke(workspace=user.personal_workspace, key_id=api_key.pk)
    later = timezone.now() + timedelta(minutes=5)
    again = api_key_revoke(workspace=user.personal_workspace, key_id=api_key.pk, now=later)
    api_key.refresh_from_db()
    assert api_key.revoked_at == first.revoked_at
    assert again.revoked_at == first.revoked_at


def test_revoke_overwrites_the_cached_identity_after_commit(
    user, django_capture_on_commit_callbacks, django_assert_num_queries
):
    api_key, plaintext = api_key_for(user)
    stale = api_key_identity_get(raw_key=plaintext)
    assert cache.get(api_key_cache_key(api_key.key_hash)) == stale

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        api_key_revoke(workspace=user.personal_workspace, key_id=api_key.pk)
    assert len(callbacks) == 1

    assert cache.get(api_key_cache_key(api_key.key_hash)) == API_KEY_REVOKED_MARKER
    # A worker that read the row just before the commit cannot put its stale identity back.
    cache.add(api_key_cache_key(api_key.key_hash), stale, 300)
    with django_assert_num_queries(0):
        assert api_key_identity_get(raw_key=plaintext) is None


def test_revoke_of_another_workspaces_key_is_404_and_changes_nothing(user, other_user):
    api_key, _ = api_key_for(other_user)
    with pytest.raises(ApiError) as exc:
        api_key_revoke(workspace=user.personal_workspace, key_id=api_key.pk)
    assert exc.value.status_code == 404
    api_key.refresh_from_db()
    assert api_key.revoked_at is None


def test_rotate_without_grace_revokes_the_old_key_now(user, django_capture_on_commit_callbacks):
    old, old_plaintext = api_key_for(user, name="prod")
    api_key_identity_get(raw_key=old_plaintext)  # warm the cache

    with django_capture_on_commit_callbacks(execute=True):
        rotation = api_key_rotate(workspace=user.personal_workspace, key_id=old.pk)

    assert rotation.new_key.name == "prod"
    assert api_key_identity_get(raw_key=old_plaintext) is None
    assert api_key_identity_get(raw_key=rotation.plaintext).key_id == rotation.new_key.pk
    old.refresh_from_db()
    assert old.revoked_at is not None


def test_rotate_with_grace_keeps_both_keys_until_the_grace_ends(user, django_capture_on_commit_callbacks):
    now = timezone.now()
    old, old_plaintext = api_key_for(user)
    api_key_identity_get(raw_key=old_plaintext, now=now)  # cached without an expiry

    with django_capture_on_commit_callbacks(execute=True):
        rotation = api_key_rotate(
            workspace=user.personal_workspace, key_id=old.pk, grace_seconds=3600, now=now
        )

    in_grace = now + timedelta(minutes=59)
    after = now + timedelta(minutes=61)
    assert api_key_identity_get(raw_key=old_plaintext, now=in_grace) is not None
    assert api_key_identity_get(raw_key=rotation.plaintext, now=in_grace) is not None
    assert api_key_identity_get(raw_key=old_plaintext, now=after) is None
    assert api_key_identity_get(raw_key=rotation.plaintext, now=after) is not None


@pytest.mark.parametrize("grace", [-1, 48 * 3600 + 1])
def test_rotate_refuses_grace_outside_0_to_48_hours(user, grace):
    old, _ = api_key_for(user)
    with pytest.raises(ApiError) as exc:
        api_key_rotate(workspace=user.personal_workspace, key_id=old.pk, grace_seconds=grace)
    assert exc.value.param == "grace_seconds"
    assert ApiKey.objects.filter(workspace=user.personal_workspace).count() == 1


def test_rotate_refuses_a_revoked_or_already_rotating_key(user):
    revoked, _ = api_key_for(user)
    api_key_revoke(workspace=user.personal_workspace, key_id=revoked.pk)
    with pytest.raises(ApiError) as exc:
        api_key_rotate(workspace=user.personal_workspace, key_id=revoked.pk)
    assert exc.value.status_code == 409

    rotating, _ = api_key_for(user)
    api_key_rotate(workspace=user.personal_workspace, key_id=rotating.pk, grace_seconds=60)
    with pytest.raises(ApiError):
        api_key_rotate(workspace=user.personal_workspace, key_id=rotating.pk)


def test_rotate_is_allowed_at_the_key_limit(user, settings):
    settings.API_KEYS_PER_USER_LIMIT = 1
    old, _ = api_key_for(user)
    rotation = api_key_rotate(workspace=user.personal_workspace, key_id=old.pk, grace_seconds=60)
    assert rotation.new_key.pk != old.pk


def test_touch_writes_at_most_once_a_minute(user, django_assert_num_queries):
    api_key, plaintext = api_key_for(user)
    identity = api_key_identity_get(raw_key=plaintext)
    now = timezone.now()

    with django_assert_num_queries(1):
        assert api_key_touch(identity=identity, now=now) is True
    with django_assert_num_queries(0):
        assert api_key_touch(identity=identity, now=now + timedelta(seconds=30)) is False
    api_key.refresh_from_db()
    assert api_key.last_used_at == now

    cache.delete(f"apikey-touch:{api_key.pk}")  # the minute has passed (the gate expired)
    later = now + timedelta(seconds=61)
    assert api_key_touch(identity=identity, now=later) is True
    api_key.refresh_from_db()
    assert api_key.last_used_at == later


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_cannot_pass_the_limit(settings):
    settings.API_KEYS_PER_USER_LIMIT = 3
    user = UserFactory()
    barrier = threading.Barrier(8)
    results = []

    def create(i):
        try:
            barrier.wait()
            api_key_create(workspace=user.personal_workspace, created_by=user, name=f"k{i}")
            results.append("ok")
        except ApiError:
            results.append("limit")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results.count("ok") == 3
    assert ApiKey.objects.filter(workspace=user.personal_workspace).count() == 3


@pytest.mark.redis
def test_revocation_is_seen_by_another_worker_through_redis(
    user, monkeypatch, django_capture_on_commit_callbacks
):
    """Two independent Redis clients stand for two worker processes sharing the cache."""
    other_worker_cache = caches.create_connection("default")
    api_key, plaintext = api_key_for(user)
    monkeypatch.setattr(selectors, "cache", other_worker_cache)
    assert api_key_identity_get(raw_key=plaintext) is not None  # cached by the other worker
    monkeypatch.undo()

    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(workspace=user.personal_workspace, key_id=api_key.pk)

    monkeypatch.setattr(selectors, "cache", other_worker_cache)
    assert api_key_identity_get(raw_key=plaintext) is None
