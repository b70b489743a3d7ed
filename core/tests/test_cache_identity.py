"""Every cache key carries the database's identity; the rotate command replaces it."""

import asyncio
import uuid

import pytest
from django.core.cache import cache
from django.core.management import call_command

from core import cache_identity, fastio
from core.models import DeploymentIdentity

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _forget_identity():
    """Each test reads the identity of its own database state; later tests re-read theirs."""
    cache_identity.identity_forget()
    yield
    cache_identity.identity_forget()


def test_the_database_is_created_with_an_identity():
    row = DeploymentIdentity.objects.get(pk=1)
    assert cache_identity.instance_id() == str(row.instance_id)


def test_every_key_path_carries_the_identity():
    ident = cache_identity.instance_id()
    prefix = cache_identity.key_prefix()
    assert prefix.endswith(f":{ident}")
    assert cache.make_key("billing:ws-plan:7") == f"{prefix}:1:billing:ws-plan:7"
    assert fastio.cache_key("billing:ws-plan:7") == cache.make_key("billing:ws-plan:7")


def test_an_entry_written_under_another_identity_is_not_read():
    cache.set("plan:ws:1", "business")
    DeploymentIdentity.objects.filter(pk=1).update(instance_id=uuid.uuid4())
    cache_identity.identity_forget()  # another process: it reads the database's identity afresh
    assert cache.get("plan:ws:1") is None
    cache.set("plan:ws:1", "free")
    assert cache.get("plan:ws:1") == "free"


def test_a_database_without_its_row_gets_a_new_identity():
    old = cache_identity.instance_id()
    DeploymentIdentity.objects.all().delete()  # what ``flush`` leaves
    cache_identity.identity_forget()
    new = cache_identity.instance_id()
    assert new != old
    assert str(DeploymentIdentity.objects.get(pk=1).instance_id) == new


def test_rotate_command_changes_the_identity_and_this_process_uses_it(capsys):
    before = cache_identity.instance_id()
    key_before = fastio.cache_key("k")
    call_command("cache_identity_rotate")
    after = str(DeploymentIdentity.objects.get(pk=1).instance_id)
    assert after != before
    assert after in capsys.readouterr().out
    assert cache_identity.instance_id() == after
    assert fastio.cache_key("k") != key_before
    assert after in fastio.cache_key("k")


@pytest.mark.django_db(transaction=True)
def test_first_read_on_an_event_loop_goes_through_a_thread():
    """The fast lane builds keys on the event loop, where Django refuses synchronous queries."""
    expected = str(DeploymentIdentity.objects.get(pk=1).instance_id)

    async def read():
        return cache_identity.cache_key("x")

    assert asyncio.run(read()).endswith(f":{expected}:1:x")


@pytest.mark.django_db(transaction=True)
def test_a_flushed_database_gets_a_new_identity_that_this_process_uses():
    old = cache_identity.instance_id()
    call_command("flush", "--noinput")
    row = DeploymentIdentity.objects.get(pk=1)  # recreated by post_migrate
    assert str(row.instance_id) != old
    assert cache_identity.instance_id() == str(row.instance_id)
