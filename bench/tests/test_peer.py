"""``python -m bench --peer``: kept from rotting without LiteLLM, against a stub speaking its protocol.

The stub (``bench/stub_peer.py``) answers what the bench asks of LiteLLM's proxy: a Bearer master
key, ``/v1/chat/completions`` in JSON and SSE. The end-to-end test runs the whole peer mode through
it (Tollgate under gunicorn, the stub under uvicorn workers, the bare floor, wrk and the stream
client, the accounting check after every phase); the others pin what the figures become.
"""

import json

import httpx
import pytest

from bench import loadgen, peer, peer_servers, report, stub_peer
from bench.__main__ import parse_args, peer_run
from bench.environment import manage
from bench.fake_upstream import FakeUpstream
from bench.phases import Bench
from bench.setup import BenchTenant
from proxy.tests.live import uvicorn_served

RATIOS = {
    "c1_added_p50",
    "c1_added_p99",
    "c64_rps",
    "inflight_rps",
    "streams_added_ttft_p99",
    "sustained_added_ttft_p99",
    "rss",
    "streams_vs_floor",
}


@pytest.fixture
def stub(monkeypatch):
    with FakeUpstream(latency_ms=0, completion_tokens=12, stream_chunks=4) as upstream:
        monkeypatch.setattr(stub_peer, "UPSTREAM_URL", f"{upstream.base_url}/chat/completions")
        monkeypatch.setattr(stub_peer, "MASTER_KEY", "sk-master")
        with uvicorn_served(application=stub_peer.application, lifespan="on") as (base_url, _thread):
            yield base_url, upstream


def test_the_stub_peer_answers_with_the_master_key_only(stub):
    url, upstream = stub
    chat = f"{url}/v1/chat/completions"
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
        refused = httpx.post(chat, json=loadgen.CHAT_BODY, headers=headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "auth_error"
    assert upstream.server.chat_requests == 0  # refused before anything went upstream

    answered = httpx.post(chat, json=loadgen.CHAT_BODY, headers={"Authorization": "Bearer sk-master"})
    assert answered.status_code == 200
    assert answered.json()["usage"]["completion_tokens"] == 12
    assert httpx.get(f"{url}{peer_servers.READY_PATH}").status_code == 200


def test_the_stub_peer_streams_server_sent_events(stub):
    url, _ = stub
    stats = loadgen.streams_run(url=f"{url}/v1/chat/completions", count=4, auth="sk-master")
    assert (stats.completed, stats.errors, len(stats.ttft_ms)) == (4, 0, 4)
    refused = loadgen.streams_run(url=f"{url}/v1/chat/completions", count=2, auth="sk-wrong")
    assert (refused.completed, refused.statuses) == (0, {"401": 2})


def test_litellm_is_configured_with_a_master_key_no_database_and_the_fake_upstream(monkeypatch, tmp_path):
    config = peer_servers.litellm_config(upstream_port=9123)
    models = {model["model_name"]: model["litellm_params"] for model in config["model_list"]}
    assert set(models) == {loadgen.CHAT_BODY["model"], "*"}  # the bench's model, and every other
    assert {params["api_base"] for params in models.values()} == {"http://127.0.0.1:9123/v1"}
    assert config["general_settings"] == {"master_key": peer_servers.MASTER_KEY}  # no database_url

    monkeypatch.setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tollgate")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    env = peer_servers.litellm_env(home=tmp_path)
    assert "DATABASE_URL" not in env and "REDIS_URL" not in env  # it would keep books there
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"  # no fetch from the internet at start-up
    assert env["LITELLM_TELEMETRY_DISABLED"] == "True"


def _stats(p50: float, p99: float, rps: float, errors: int = 0) -> dict:
    return {"p50_ms": p50, "p90_ms": p50, "p99_ms": p99, "rps": rps, "errors": errors}


def _figures(*, tollgate_c64_errors: int = 0) -> dict:
    """A peer run's figures: LiteLLM adding 10× Tollgate's p50 at c=1, and so on."""

    def row(concurrency, *, added, rps, errors=0):
        t_added, p_added = added
        t_rps, p_rps = rps
        return {
            "concurrency": concurrency,
            "direct": _stats(0.1, 0.5, 20000),
            "tollgate": {
                **_stats(0.1 + t_added, 0.5 + 2 * t_added, t_rps, errors),
                "cpu_ms_per_request": 1.5,
            },
            "peer": {**_stats(0.1 + p_added, 0.5 + 2 * p_added, p_rps), "cpu_ms_per_request": 9.0},
            "tollgate_added_p50_ms": t_added,
            "tollgate_added_p99_ms": 2 * t_added,
            "peer_added_p50_ms": p_added,
            "peer_added_p99_ms": 2 * p_added,
        }

    figures = {
        "name": "litellm",
        "version": "1.2.3",
        "workers": 2,
        "meta": {"summary": "2026-12-06, commit abc1234, 600 s"},
        "accounting_ok": True,
        "instant": [
            row(1, added=(2.0, 20.0), rps=(400, 40)),
            row(64, added=(40.0, 400.0), rps=(1200, 300), errors=tollgate_c64_errors),
        ],
        "inflight": {
            "upstream_latency_s": 2.0,
            "duration_s": 30,
            "steps": [
                {
                    "connections": 500,
                    "direct": {"rps": 233.0, "p50_ms": 2005},
                    "tollgate": {"rps": 232.0, "p50_ms": 2040, "errors": 0, "rss_mb": 290},
                    "peer": {"rps": 116.0, "p50_ms": 4100, "errors": 0, "rss_mb": 1100},
                }
            ],
        },
        "streams": {
            "count": 200,
            "burst": {
                "direct_ttft_p99_ms": 230.0,
                "tollgate_added_ttft_p99_ms": 100.0,
                "peer_added_ttft_p99_ms": 250.0,
                "floor_added_ttft_p99_ms": 20.0,
                "tollgate_errors": 0,
                "peer_errors": 0,
                "floor_errors": 0,
            },
            "sustained": {
                "direct_ttft_p99_ms": 220.0,
                "tollgate_added_ttft_p99_ms": 150.0,
                "peer_added_ttft_p99_ms": -3.0,  # noise: no ratio is made of it
                "floor_added_ttft_p99_ms": 10.0,
                "tollgate_errors": 0,
                "peer_errors": 0,
            },
        },
        "rss_mb": {"tollgate": 300.0, "peer": 1200.0, "floor": 120.0},
    }
    figures["ratios"] = peer.peer_ratios(figures)
    figures["goals"] = peer.peer_goals(figures)
    return figures


def test_each_ratio_is_written_so_that_bigger_is_better_for_tollgate():
    ratios = _figures()["ratios"]
    assert set(ratios) == RATIOS
    assert ratios["c1_added_p50"] == 10.0  # LiteLLM ÷ Tollgate for latencies
    assert ratios["c1_added_p99"] == 10.0
    assert ratios["c64_rps"] == 4.0  # Tollgate ÷ LiteLLM for throughput
    assert ratios["inflight_rps"] == 2.0
    assert ratios["streams_added_ttft_p99"] == 2.5
    assert ratios["sustained_added_ttft_p99"] is None
    assert ratios["rss"] == 4.0  # LiteLLM ÷ Tollgate for memory
    assert ratios["streams_vs_floor"] == 5.0  # Tollgate ÷ the bare floor: smaller is better


def test_goals_are_read_from_the_ratios_and_throughput_needs_zero_errors():
    verdicts = {goal["ratio"]: goal["met"] for goal in _figures()["goals"]}
    assert verdicts == {
        "c1_added_p50": True,
        "c64_rps": False,
        "inflight_rps": True,
        "streams_added_ttft_p99": False,
        "streams_vs_floor": False,
        "rss": True,
    }
    figures = _figures(tollgate_c64_errors=3)
    figures["instant"][1]["tollgate"]["rps"] = 9000  # 30× the peer's, but with errors
    figures["ratios"] = peer.peer_ratios(figures)
    (c64,) = [goal for goal in peer.peer_goals(figures) if goal["ratio"] == "c64_rps"]
    assert (c64["value"], c64["met"]) == (30.0, False)


def test_the_peer_table_prints_the_figures_the_ratios_and_that_the_peer_keeps_no_books():
    table = report.peer_markdown(_figures())
    assert "Against LiteLLM 1.2.3 in the same run (2026-12-06, commit abc1234, 600 s" in table
    assert "**LiteLLM keeps no books**" in table and "flatters it" in table
    assert "| c=1: added p50 / p99 ms | 0.10 / 0.50 | 2.00 / 4.00 | 20.00 / 40.00 | 10.00× / 10.00× |" in (
        table
    )
    assert "| c=64: rps (errors), CPU ms per call | 20000 | 1200 (0), 1.50 | 300 (0), 9.00 | 4.00× |" in table
    assert "| 500 in flight, 2.0 s upstream: rps (errors), p50 ms | 233.0, 2005 | 232.0 (0), 2040" in table
    assert "| 200 streams started in the same instant: added TTFT p99 ms (errors) | TTFT p99 230.0 " in table
    assert "| 100.0 (0) | 250.0 (0) | 2.50× |" in table
    assert "| -3.0 (0) | n/a |" in table  # kept open: noise, no ratio
    assert "| peak RSS MB, all processes of the server | | 300 | 1200 | 4.00× |" in table
    assert "(`streams_vs_floor`, smaller is better): **5.00×**" in table
    assert "(`c1_added_p50` >= 5) | 10.00× | met |" in table
    assert "(`streams_vs_floor` <= 2) | 5.00× | missed |" in table
    # The main table carries it too, so results.md shows the latest peer run.
    assert "**LiteLLM keeps no books**" in report.results_markdown({"peer": _figures()})


@pytest.mark.wrk
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_peer_mode_runs_end_to_end_against_the_stub(settings):
    """``python -m bench --peer stub --quick`` in small: every target answers every call, the books
    add up after every phase, and the ratios and the table come out."""
    database = settings.DATABASES["default"]
    args = parse_args(
        [
            "--peer",
            "stub",
            "--quick",
            "--concurrency",
            "1",
            "--duration",
            "1",
            "--no-celery",
            "--no-write",
            "--database-url",
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
            "--redis-url",
            settings.REDIS_URL,
        ]
    )
    bench = Bench(args)
    # The tenant as `manage.py bench_setup` makes it, with the bench's own secrets (Tollgate, served
    # with them, must decrypt the provider keys); Bench.prepare would set up Django in this process.
    manage(bench.env, "seed_catalog")
    created = manage(bench.env, "bench_setup")
    tenant = next(json.loads(line) for line in created.splitlines() if line.startswith('{"workspace_id"'))
    bench.tenant = BenchTenant(**tenant)

    figures = peer_run(bench)

    assert figures["name"] == "stub"
    assert figures["accounting_ok"], figures["accounting_problems"]
    (row,) = figures["instant"]
    for target in ("tollgate", "peer"):
        assert row[target]["errors"] == 0 and row[target]["rps"] > 0, target
    (step,) = figures["inflight"]["steps"]
    assert step["connections"] == 20
    assert step["tollgate"]["errors"] == step["peer"]["errors"] == 0
    for phase in ("burst", "sustained"):
        streams = figures["streams"][phase]
        assert streams["tollgate_errors"] == streams["peer_errors"] == streams["floor_errors"] == 0, phase
    assert set(figures["ratios"]) == RATIOS
    assert figures["ratios"]["inflight_rps"] > 0 and figures["ratios"]["rss"] > 0
    assert all(rss > 0 for rss in figures["rss_mb"].values())
    assert "**Stub peer keeps no books**" in report.peer_markdown(figures)
