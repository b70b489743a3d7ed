import threading

import pytest

from proxy.ratelimit import rate_limit_hit


def test_counts_per_key_per_minute_window():
    states = [rate_limit_hit(key_id=1, limit=2, now=120.0) for _ in range(3)]

    assert [s.exceeded for s in states] == [False, False, True]
    assert [s.remaining for s in states] == [1, 0, 0]
    assert states[0].reset_at == 180
    assert rate_limit_hit(key_id=2, limit=2, now=120.0).exceeded is False  # another key
    assert rate_limit_hit(key_id=1, limit=2, now=181.0).exceeded is False  # next minute


@pytest.mark.redis
def test_limit_holds_across_threads_on_redis():
    barrier = threading.Barrier(30)
    exceeded = []

    def worker():
        barrier.wait()
        exceeded.append(rate_limit_hit(key_id=99, limit=10, now=600.0).exceeded)

    threads = [threading.Thread(target=worker) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert exceeded.count(False) == 10
