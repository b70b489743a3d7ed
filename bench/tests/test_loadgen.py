"""Load generator plumbing: wrk output parsing, merging interleaved runs, the asyncio clients."""

import pytest

from bench import loadgen
from bench.fake_upstream import FakeUpstream


def _wrk_json(requests, quantiles, non2xx=0, timeout=0):
    return {
        "requests": requests,
        "duration_us": 2_000_000,
        "non2xx": non2xx,
        "statuses": {"500": non2xx} if non2xx else {},
        "errors": {"connect": 1, "read": 0, "write": 0, "status": non2xx, "timeout": timeout},
        "max_us": max(quantiles),
        "quantiles_us": quantiles,
    }


def test_merge_weighs_each_run_by_its_request_count():
    fast = loadgen.RunStats.from_wrk_json(_wrk_json(900, [1000] * 10))  # 1 ms
    slow = loadgen.RunStats.from_wrk_json(_wrk_json(100, [9000] * 10, non2xx=3, timeout=2))  # 9 ms
    merged = loadgen.RunStats.merge([fast, slow])
    assert merged.requests == 1000
    assert merged.rps == 250  # 1 000 requests over 4 s
    assert merged.percentile_ms(50) == 1.0
    assert merged.percentile_ms(89) == 1.0
    assert merged.percentile_ms(95) == 9.0
    assert merged.errors == 3 + 2 + 2  # non-2xx + timeouts + one connect error per run
    assert merged.ok == 997
    assert merged.statuses == {"500": 3}


def test_steady_rps_leaves_out_the_first_waves_and_the_unfinished_end():
    started = 1_700_000_000
    # A 10 s run of 2 s calls: nothing completes in its first 2 s, 100 a second afterwards,
    # and the last (partial) second sees only a few.
    per_second = {started + s: 100 for s in range(2, 10)} | {started + 10: 7}
    data = _wrk_json(sum(per_second.values()), [2_000_000] * 10)
    data |= {
        "duration_us": 10_000_000,
        "started_s": started,
        "per_second": {str(k): v for k, v in per_second.items()},
    }
    run = loadgen.RunStats.from_wrk_json(data)

    assert run.rps == 80.7  # the window's count: 807 calls in 10 s
    assert run.steady_rps(skip_s=5) == 100  # seconds 5..8 of the run
    assert run.steady_rps(skip_s=7) is None  # fewer than three steady seconds left
    assert loadgen.RunStats.from_wrk_json(_wrk_json(10, [1000] * 10)).steady_rps(skip_s=1) is None


def test_percentile_nearest_rank():
    values = sorted(float(v) for v in range(1, 101))
    assert loadgen.percentile(values, 50) == 50
    assert loadgen.percentile(values, 99) == 99
    assert loadgen.percentile([], 99) == 0


def test_calls_and_streams_against_the_fake_upstream():
    with FakeUpstream(latency_ms=20) as upstream:
        url = f"{upstream.base_url}/chat/completions"
        calls = loadgen.calls_run(url=url, total=10, concurrency=2)
        streams = loadgen.streams_run(url=url, count=5)
    assert calls.requests == 10 and calls.errors == 0
    assert calls.percentile_ms(50) >= 20
    assert streams.completed == 5 and streams.errors == 0
    assert all(ttft >= 20 for ttft in streams.ttft_ms)


def test_sustained_streams_keep_each_client_busy_and_measure_only_after_the_warm_up():
    with FakeUpstream(latency_ms=50) as upstream:
        url = f"{upstream.base_url}/chat/completions"
        measured, everything = loadgen.streams_sustained_run(
            url=url, concurrency=4, duration_s=0.6, warmup_s=0.3
        )
    # 4 clients back to back with 50 ms streams for 0.9 s: each ran several streams in turn.
    assert 4 * 4 <= everything.count <= 4 * 18 and everything.errors == 0
    assert everything.completed == everything.count  # a started stream is always finished
    assert 0 < measured.count < everything.count  # the warm-up's streams are left out
    assert len(measured.ttft_ms) == measured.count and min(measured.ttft_ms) >= 50


@pytest.mark.wrk
def test_wrk_run_reports_latency_and_non_2xx():
    with FakeUpstream(latency_ms=2) as upstream:
        url = f"{upstream.base_url}/chat/completions"
        ok = loadgen.wrk_run(url=url, connections=2, duration_s=1)
        upstream.config.status = 502
        failing = loadgen.wrk_run(url=url, connections=2, duration_s=1)
    assert ok.requests > 50 and ok.errors == 0
    assert sum(ok.per_second.values()) == ok.requests  # every answer counted in its second
    assert min(ok.per_second) >= ok.started_s > 0
    assert 2 <= ok.percentile_ms(50) < 50
    assert failing.non2xx == failing.requests > 0
    assert failing.statuses == {"502": failing.requests}
