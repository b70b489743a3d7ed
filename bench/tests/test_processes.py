"""The bench's reading of the PostgreSQL and Redis servers' CPU time (the servers' side of a call)."""

import pytest
import redis
from django.conf import settings
from django.db import connection

from bench import processes

BUSY_SECONDS = 0.5


@pytest.mark.postgres
@pytest.mark.django_db
def test_work_done_by_postgresql_is_counted_as_postgresql_time():
    before = processes.service_cpu_seconds()

    with connection.cursor() as cursor:  # a backend spinning on the CPU for BUSY_SECONDS
        cursor.execute(
            "DO $$ BEGIN WHILE clock_timestamp() < statement_timestamp() + interval "
            f"'{BUSY_SECONDS} seconds' LOOP END LOOP; END $$"
        )

    spent = processes.service_cpu_spent(before)
    # Wall time, not CPU time: a loaded machine (two cores, the suite beside it) may give the
    # backend well under all of it, so the bound is loose; what matters is where it is counted.
    assert spent["postgresql"] >= BUSY_SECONDS * 0.4
    assert spent["redis"] < spent["postgresql"] / 2  # Redis did nothing meanwhile: not counted twice


@pytest.mark.redis
def test_work_done_by_redis_is_counted_as_redis_time():
    client = redis.Redis.from_url(settings.REDIS_URL)
    before = processes.service_cpu_seconds()

    client.eval("for i = 1, 20000000 do end return 1", 0)  # a busy script, on Redis's own CPU

    spent = processes.service_cpu_spent(before)
    assert spent["redis"] >= 0.05
    assert spent["postgresql"] < spent["redis"]
