import threading

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, connections

from proxy.dbcall import db_call


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_block_gives_its_connection_back_when_it_ends():
    """No connection is kept by the worker thread while the view awaits its upstream."""
    seen = {}

    def block():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        seen["conn"] = connections["default"]  # this thread's wrapper, not the proxy object
        seen["open_inside"] = seen["conn"].connection is not None

    async_to_sync(db_call)(block)

    assert seen["open_inside"] is True
    assert seen["conn"].connection is None  # closed, i.e. returned to the pool when pooling is on


@pytest.mark.django_db
def test_blocks_run_on_the_proxy_pool_not_the_loop_default_executor():
    names = [async_to_sync(db_call)(lambda: threading.current_thread().name) for _ in range(3)]

    assert all(name.startswith("proxy-db") for name in names), names
